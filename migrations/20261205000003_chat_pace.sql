-- A chat bot takes so many posts a minute (WeCom and DingTalk 20, Feishu/Lark 100), whoever
-- posts: two reports posting to one group share its rate. Each post reserves its turn here,
-- so runs in separate processes (Jobs, standalone runs) space their posts to one bot as one.
CREATE TABLE chat_pace (
    namespace text        NOT NULL,
    -- SHA-256 of the webhook URL: which bot, never its key.
    bot       text        NOT NULL,
    -- The earliest the next post to this bot may go.
    next_at   timestamptz NOT NULL,
    PRIMARY KEY (namespace, bot)
);

ALTER TABLE chat_pace ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON chat_pace USING (namespace = finrep_tenant())
    WITH CHECK (namespace = finrep_tenant());
