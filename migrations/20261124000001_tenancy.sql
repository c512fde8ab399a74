-- Namespaces are tenants: one namespace's SMTP server, feeds or summariser must not change
-- what another namespace sends. Existing rows are kept.

-- A permanent rejection blacklists the address for the namespace whose report saw it. Rows
-- from before take the namespace of their report (or `default` when none is recorded).
ALTER TABLE blacklist ADD COLUMN namespace text;
UPDATE blacklist b
   SET namespace = COALESCE((SELECT r.namespace FROM reports r WHERE r.id = b.report_id), 'default');
ALTER TABLE blacklist ALTER COLUMN namespace SET NOT NULL;
ALTER TABLE blacklist DROP CONSTRAINT blacklist_pkey;
ALTER TABLE blacklist ADD PRIMARY KEY (namespace, email);

-- An article is its canonical URL within a namespace: another namespace's feed can no longer
-- overwrite the title a "304 Not Modified" later reuses.
ALTER TABLE articles DROP CONSTRAINT articles_url_hash_key;
ALTER TABLE articles ADD CONSTRAINT articles_namespace_url_hash_key UNIQUE (namespace, url_hash);

-- The summary cache is keyed by namespace and by a hash of exactly what the model was given
-- (title and the whole text sent). Summaries cached before are kept under namespace '' and
-- hashes no new lookup produces, so they are never served again.
ALTER TABLE article_summaries RENAME COLUMN content_hash TO input_hash;
ALTER TABLE article_summaries ADD COLUMN namespace text NOT NULL DEFAULT '';
ALTER TABLE article_summaries ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE article_summaries DROP CONSTRAINT article_summaries_pkey;
ALTER TABLE article_summaries ADD PRIMARY KEY (namespace, input_hash, provider, model);

-- Two more ways a source can fail: handling it panicked, or recording it failed.
ALTER TABLE fetch_log DROP CONSTRAINT fetch_log_error_kind_check;
ALTER TABLE fetch_log ADD CONSTRAINT fetch_log_error_kind_check
    CHECK (error_kind IN ('timeout', 'http', 'parse', 'blocked', 'too-large', 'connect', 'config', 'panic', 'store'));
