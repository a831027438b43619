-- 0005: API keys. Only the sha256 of each key is stored; the key itself is shown once, by
-- `kjs keys create`. A key acts for exactly one tenant (user_id) with a set of scopes.
CREATE TABLE kjs_api_keys (
    key_id      uuid PRIMARY KEY,
    user_id     text NOT NULL,
    key_hash    bytea NOT NULL,
    scopes      text[] NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT kjs_api_keys_hash_unique UNIQUE (key_hash),
    CONSTRAINT kjs_api_keys_hash_length CHECK (octet_length(key_hash) = 32),
    CONSTRAINT kjs_api_keys_scopes_check
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'admin']::text[])
);

CREATE INDEX kjs_api_keys_by_user ON kjs_api_keys (user_id, created_at);
