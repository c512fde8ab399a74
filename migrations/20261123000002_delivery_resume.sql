-- When a delivery was found in 'sending' by a later attempt (the process died during or
-- right after the SMTP transaction): kept even after the row is resent, so the console can
-- show which recipients may have received two copies.
ALTER TABLE delivery_log ADD COLUMN uncertain_at timestamptz;

-- The report's view model, so any attempt of the day can render each recipient's copy
-- (their sections, name and unsubscribe link) from the report that was composed.
ALTER TABLE reports ADD COLUMN view jsonb;
