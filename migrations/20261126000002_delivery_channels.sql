-- Deliveries to chat groups (WeCom, DingTalk, Feishu/Lark group bots) beside e-mail.
--
-- Expand only: a release before this one keeps reading and writing these tables. A delivery's
-- identity stays (report row, address); for a chat group the address is `<platform>:<Recipient
-- name>` (its webhook URL is a credential and is never stored). Rows written before this
-- migration are e-mail.
ALTER TABLE delivery_log ADD COLUMN channel text NOT NULL DEFAULT 'email'
    CHECK (channel IN ('email', 'wecom', 'dingtalk', 'feishu', 'lark'));

COMMENT ON COLUMN delivery_log.email IS
    'the delivery''s address: a lower-cased e-mail address, or <platform>:<Recipient name> for a chat group';
COMMENT ON COLUMN delivery_log.smtp_code IS
    'the transport''s reply code: the SMTP reply code, or the chat platform''s errcode/code';
COMMENT ON COLUMN delivery_log.smtp_reply IS
    'the transport''s reply text: the SMTP reply, or the chat platform''s errmsg/msg';
COMMENT ON COLUMN blacklist.email IS
    'a lower-cased e-mail address, or <platform>:<Recipient name> for a chat group whose bot refused for good';
