-- The console counts summariser calls by the report date of their run (as it counts runs,
-- steps and deliveries): calls are found by their run.
CREATE INDEX provider_calls_report_idx ON provider_calls (report_id);
