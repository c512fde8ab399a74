-- The web console and one-click unsubscribe.

-- Console sessions. The cookie holds a random value; only its SHA-256 is kept, so a copy of
-- the database does not log anybody in. Each session has its own CSRF token.
CREATE TABLE web_sessions (
    id_hash      bytea       PRIMARY KEY,
    account      text        NOT NULL,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- When a recipient unsubscribed and how (the mail client's one-click POST or the page).
ALTER TABLE blacklist ADD COLUMN via text;

-- Each report's next slot as its scheduler (controller or standalone) last computed it, so
-- the console shows it without asking the Kubernetes API.
CREATE TABLE report_schedule (
    namespace  text        NOT NULL,
    report     text        NOT NULL,
    next_slot  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, report)
);

-- Every backup that ran, for the console's "last backup".
CREATE TABLE backups (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    file        text,
    bytes       bigint,
    ok          boolean     NOT NULL,
    error       text,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backups_finished_idx ON backups (finished_at DESC);

-- Bounded console queries: a day's delivery log by status, the archive by date, recent
-- fetches and provider calls by time.
CREATE INDEX delivery_log_report_status_idx ON delivery_log (report_id, status, email);
CREATE INDEX reports_date_report_idx ON reports (report_date DESC, namespace, report);
CREATE INDEX fetch_log_started_idx ON fetch_log (started_at);
CREATE INDEX provider_calls_called_idx ON provider_calls (called_at);
CREATE INDEX step_timings_started_idx ON step_timings (started_at);
