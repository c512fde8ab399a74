-- finrep schema, version 1.
--
-- Identity rules:
--   * a report run is (namespace, report, local date): one row in `reports`;
--   * a delivery is (report row, recipient address): one row in `delivery_log`;
--   * an article is its canonical URL (hashed), with a content hash for near-duplicates.
-- Times are timestamptz (UTC on disk); local dates are `date` in the report's zone.

-- Per-source fetch state: conditional GET validators and health, one row per Source.
CREATE TABLE source_state (
    namespace            text        NOT NULL,
    source               text        NOT NULL,
    url                  text        NOT NULL,
    etag                 text,
    last_modified        text,
    last_fetch_at        timestamptz,
    last_success_at      timestamptz,
    last_status          integer,
    items_last_fetch     integer     NOT NULL DEFAULT 0,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    last_error_kind      text,
    last_error           text,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, source)
);

-- Articles, deduplicated across days by canonical URL.
CREATE TABLE articles (
    id              bigserial   PRIMARY KEY,
    url_hash        bytea       NOT NULL UNIQUE,          -- SHA-256 of the canonical URL
    canonical_url   text        NOT NULL,
    content_hash    bytea       NOT NULL,                 -- SHA-256 of normalised title + summary
    title           text        NOT NULL,
    summary         text,
    namespace       text        NOT NULL,
    source          text        NOT NULL,
    category        text        NOT NULL,
    language        text,
    published_at    timestamptz,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    entities        jsonb       NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX articles_content_hash_idx ON articles (content_hash);
CREATE INDEX articles_first_seen_idx ON articles (first_seen_at);

-- AI summaries cached by article content, so a retried run or the next day never pays twice.
CREATE TABLE article_summaries (
    content_hash    bytea       NOT NULL,
    provider        text        NOT NULL,
    model           text        NOT NULL,
    summary         text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (content_hash, provider, model)
);

-- One report per DailyReport per local date.
CREATE TABLE reports (
    id              bigserial   PRIMARY KEY,
    namespace       text        NOT NULL,
    report          text        NOT NULL,
    report_date     date        NOT NULL,
    time_zone       text        NOT NULL,
    scheduled_for   timestamptz,
    manual          boolean     NOT NULL DEFAULT false,
    phase           text        NOT NULL DEFAULT 'Pending'
        CHECK (phase IN ('Pending', 'Collecting', 'Composing', 'Sending', 'Succeeded',
                         'PartiallyDelivered', 'Failed', 'Missed')),
    title           text,
    subject         text,
    html            text,
    text_body       text,
    article_count   integer     NOT NULL DEFAULT 0,
    recipient_count integer     NOT NULL DEFAULT 0,
    sent_count      integer     NOT NULL DEFAULT 0,
    deferred_count  integer     NOT NULL DEFAULT 0,
    failed_count    integer     NOT NULL DEFAULT 0,
    bounced_count   integer     NOT NULL DEFAULT 0,
    uncertain_count integer     NOT NULL DEFAULT 0,
    plan            jsonb,
    outcome         jsonb,
    build_version   text,
    build_revision  text,
    error           text,
    started_at      timestamptz,
    finished_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, report, report_date)
);
CREATE INDEX reports_date_idx ON reports (report_date DESC);

-- Articles chosen for a report, in rank order.
CREATE TABLE report_articles (
    report_id       bigint      NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    article_id      bigint      NOT NULL REFERENCES articles (id) ON DELETE CASCADE,
    rank            integer     NOT NULL,
    section         text        NOT NULL,
    score           double precision NOT NULL,
    corroborated_by jsonb       NOT NULL DEFAULT '[]'::jsonb,
    PRIMARY KEY (report_id, article_id)
);

-- One delivery per report per recipient address. State machine:
--   pending -> sending -> sent | deferred | failed | bounced
--   sending (left by a crash) -> uncertain
CREATE TABLE delivery_log (
    id              bigserial   PRIMARY KEY,
    report_id       bigint      NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    recipient       text        NOT NULL,                 -- Recipient resource name
    email           text        NOT NULL,                 -- lower-cased address
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'bounced', 'uncertain')),
    attempts        integer     NOT NULL DEFAULT 0,
    smtp_code       integer,
    smtp_reply      text,
    message_id      text,
    last_error      text,
    claimed_at      timestamptz,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_id, email)
);
CREATE INDEX delivery_log_status_idx ON delivery_log (status);
CREATE INDEX delivery_log_email_idx ON delivery_log (email);

-- Addresses that must not be mailed: permanent SMTP rejections, unsubscribes.
CREATE TABLE blacklist (
    email           text        PRIMARY KEY,              -- lower-cased address
    reason          text        NOT NULL CHECK (reason IN ('bounce', 'unsubscribe', 'manual')),
    smtp_code       integer,
    smtp_reply      text,
    report_id       bigint      REFERENCES reports (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One outcome per source per run, for the console and Source status.
CREATE TABLE fetch_log (
    id              bigserial   PRIMARY KEY,
    report_id       bigint      REFERENCES reports (id) ON DELETE CASCADE,
    namespace       text        NOT NULL,
    source          text        NOT NULL,
    url             text        NOT NULL,
    started_at      timestamptz NOT NULL,
    latency_ms      integer     NOT NULL,
    http_status     integer,
    items           integer     NOT NULL DEFAULT 0,
    not_modified    boolean     NOT NULL DEFAULT false,
    error_kind      text CHECK (error_kind IN ('timeout', 'http', 'parse', 'blocked', 'too-large', 'connect', 'config')),
    error           text
);
CREATE INDEX fetch_log_source_idx ON fetch_log (namespace, source, started_at DESC);

-- Step timings of each run (collect, extract, compose, send).
CREATE TABLE step_timings (
    id              bigserial   PRIMARY KEY,
    report_id       bigint      NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    step            text        NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    ok              boolean     NOT NULL,
    detail          text
);
CREATE INDEX step_timings_report_idx ON step_timings (report_id);

-- Calls to external providers (summariser), for the console's timeout and error rates.
CREATE TABLE provider_calls (
    id              bigserial   PRIMARY KEY,
    report_id       bigint      REFERENCES reports (id) ON DELETE CASCADE,
    provider        text        NOT NULL,
    model           text,
    purpose         text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('ok', 'timeout', 'rate-limited', 'error', 'cached')),
    latency_ms      integer     NOT NULL,
    http_status     integer,
    called_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_calls_provider_idx ON provider_calls (provider, called_at DESC);
