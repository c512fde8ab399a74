-- A namespace is a tenant, in the database too. Each served namespace may get a PostgreSQL
-- role of its own (`finrep tenant-role`, run with a credential that may create roles: never
-- by a pipeline pod or the web), listed here; row-level security then shows and lets it
-- write only its own namespace's rows, also in the tables that reach a namespace through
-- `reports`. The operator's role (the tables' owner, which runs migrations, the controller,
-- the web and backups) is not subject to these policies: RLS is enabled, not forced.

CREATE TABLE tenant_roles (
    role        name        PRIMARY KEY,
    namespace   text        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);

-- Values only the owner reads: the run lock's salt, so no session can compute (and take)
-- another namespace's run lock.
CREATE TABLE finrep_internal (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO finrep_internal (key, value) VALUES ('run-lock-salt', gen_random_uuid()::text);

-- The namespace of the connected tenant role; NULL for every other role.
CREATE FUNCTION finrep_tenant() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$ SELECT namespace FROM public.tenant_roles WHERE role = session_user $$;

-- The advisory lock key of run `report_id`, salted; NULL for a report of another namespace.
CREATE FUNCTION finrep_run_lock_key(report_id bigint) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        SELECT hashtextextended('finrep.run:' || s.value || ':' || r.namespace || ':' || r.id::text, 0)
          FROM public.reports r, public.finrep_internal s
         WHERE r.id = report_id AND s.key = 'run-lock-salt'
           AND (public.finrep_tenant() IS NULL OR r.namespace = public.finrep_tenant())
    $$;
REVOKE ALL ON FUNCTION finrep_run_lock_key(bigint) FROM PUBLIC;

-- Takes run `report_id`'s session lock, without showing its key (false: held, or not this
-- tenant's report).
CREATE FUNCTION finrep_try_run_lock(report_id bigint) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$ SELECT COALESCE(pg_try_advisory_lock(public.finrep_run_lock_key(report_id)), false) $$;

-- Who holds run `report_id`'s lock: their application_name and connection time.
CREATE FUNCTION finrep_run_lock_holder(report_id bigint)
    RETURNS TABLE (application text, since text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
        WITH k AS (SELECT public.finrep_run_lock_key(report_id) AS key)
        SELECT a.application_name::text,
               to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
          FROM k, pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.classid::bigint = ((k.key >> 32) & 4294967295)
           AND l.objid::bigint = (k.key & 4294967295)
         LIMIT 1
    $$;

-- Tables that carry their namespace.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['reports', 'articles', 'article_summaries', 'blacklist', 'consent_log',
                             'fetch_log', 'source_state', 'report_schedule', 'schedule_slots',
                             'schedule_state']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I USING (namespace = finrep_tenant())
                        WITH CHECK (namespace = finrep_tenant())', t);
    END LOOP;
END $$;

-- Tables that reach their namespace through `reports` (whose own policy already narrows the
-- subquery to the tenant's reports).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['delivery_log', 'report_articles', 'step_timings', 'provider_calls']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I
                        USING (report_id IN (SELECT r.id FROM reports r WHERE r.namespace = finrep_tenant()))
                        WITH CHECK (report_id IN (SELECT r.id FROM reports r WHERE r.namespace = finrep_tenant()))', t);
    END LOOP;
END $$;

-- Operator-only tables: no policy grants a tenant anything, and no privilege is granted.
ALTER TABLE web_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE backups ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE finrep_internal ENABLE ROW LEVEL SECURITY;
