-- A preview: a report composed ahead of its slot and sent to nobody. Apart from `reports`,
-- which holds one row per report and day and which the morning run would resume: a preview
-- never counts as the day's run, claims no delivery and records no fetch or step of a run.
CREATE TABLE previews (
    id            bigserial   PRIMARY KEY,
    namespace     text        NOT NULL,
    report        text        NOT NULL,
    -- The finrep.io/preview value (or standalone request) that asked for it.
    request       text        NOT NULL,
    report_date   date        NOT NULL,
    -- The Recipient whose copy was previewed, if any.
    recipient     text,
    status        text        NOT NULL CHECK (status IN ('running', 'ready', 'failed')),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    article_count integer     NOT NULL DEFAULT 0,
    subject       text,
    html          text,
    text          text,
    -- A chat group's message, in its platform's markup (a preview as a chat group).
    chat_message  text,
    chat_platform text,
    view          jsonb,
    outcome       jsonb,
    error         text,
    UNIQUE (namespace, report, request)
);
CREATE INDEX previews_latest_idx ON previews (namespace, report, finished_at DESC);

-- A test copy: one message, marked as a test, to one of a report's recipients. Never a
-- delivery: the recipient's copy of the day is still owed, and nothing here counts as sent.
CREATE TABLE test_sends (
    id            bigserial   PRIMARY KEY,
    namespace     text        NOT NULL,
    report        text        NOT NULL,
    -- The finrep.io/test-send value that asked for it: one copy per value.
    request       text        NOT NULL,
    recipient     text        NOT NULL,
    address       text        NOT NULL,
    channel       text        NOT NULL CHECK (channel IN ('email', 'wecom', 'dingtalk', 'feishu', 'lark')),
    -- What was sent: a preview, or the composed run of a day (none: nothing was composed).
    copy_of       text        CHECK (copy_of IN ('preview', 'run')),
    copy_date     date,
    status        text        NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'refused', 'uncertain')),
    reply         text,
    message_id    text,
    claimed_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    UNIQUE (namespace, report, request)
);
CREATE INDEX test_sends_latest_idx ON test_sends (namespace, report, claimed_at DESC);

ALTER TABLE previews ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON previews USING (namespace = finrep_tenant())
    WITH CHECK (namespace = finrep_tenant());
ALTER TABLE test_sends ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON test_sends USING (namespace = finrep_tenant())
    WITH CHECK (namespace = finrep_tenant());
