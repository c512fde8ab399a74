-- The console's counts of a year of deliveries: each run's last delivery change, read from
-- this index alone, tells whether the counts kept in memory still hold (store::run_counts).
CREATE INDEX IF NOT EXISTS delivery_log_report_updated_idx ON delivery_log (report_id, updated_at);

-- A search by part of an address across a month of runs (/console/deliveries?q=) finds its
-- rows by trigram instead of reading every address of the month. pg_trgm ships with
-- PostgreSQL's contrib and is a trusted extension (the database's owner may create it);
-- where it cannot be created, the search still works, reading its period's addresses.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available (%): address searches read their period', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX IF NOT EXISTS delivery_log_email_trgm_idx
            ON delivery_log USING gin (email gin_trgm_ops);
    END IF;
END
$$;

-- The sources page's 30-day strips and 7-day figures, per source, from the index alone.
CREATE INDEX IF NOT EXISTS fetch_log_source_health_idx
    ON fetch_log (namespace, source, started_at) INCLUDE (error_kind, latency_ms);
