-- Consent is the recipient's. An unsubscribe covers the address without a `+tag` in its
-- local part (the same rule as `finrep_core::unsubscribe::address_key`), outranks a bounce,
-- and is lifted only by the recipient or by an operator whose action is recorded here.

CREATE FUNCTION finrep_address_key(address text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT regexp_replace(lower(btrim(address)), '^([^+@]+)\+.*(@[^@]*)$', '\1\2') $$;

-- Unsubscribes recorded under a tagged address move to the address they cover; an address
-- already blacklisted for another reason becomes unsubscribed (consent outranks a bounce).
INSERT INTO blacklist (namespace, email, reason, via, created_at)
SELECT namespace, finrep_address_key(email), 'unsubscribe', min(via), min(created_at)
  FROM blacklist
 WHERE reason = 'unsubscribe' AND email <> finrep_address_key(email)
 GROUP BY namespace, finrep_address_key(email)
ON CONFLICT (namespace, email) DO UPDATE
   SET reason = 'unsubscribe', via = EXCLUDED.via, smtp_code = NULL, smtp_reply = NULL;
DELETE FROM blacklist WHERE reason = 'unsubscribe' AND email <> finrep_address_key(email);

-- Every unsubscribe and every lifting of one: who, how, when and why. The Recipient's status
-- and the console say from here who lifted an unsubscribe.
CREATE TABLE consent_log (
    id          bigserial   PRIMARY KEY,
    namespace   text        NOT NULL,
    address_key text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('unsubscribe', 'resubscribe')),
    via         text        NOT NULL,
    actor       text,
    reason      text,
    report      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_log_address_idx ON consent_log (namespace, address_key, at DESC);
INSERT INTO consent_log (namespace, address_key, action, via, at)
SELECT namespace, email, 'unsubscribe', COALESCE(via, 'unknown'), created_at
  FROM blacklist WHERE reason = 'unsubscribe';

-- A console session belongs to the credential it was opened with (a hash of the account name
-- and password hash): changing either ends every session made with the old one. Sessions of
-- before carry no credential and end at once.
ALTER TABLE web_sessions ADD COLUMN credential_epoch text NOT NULL DEFAULT '';
ALTER TABLE web_sessions ALTER COLUMN credential_epoch DROP DEFAULT;
