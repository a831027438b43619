-- 0008: service keys. A key acts for one tenant (user_id), for a list of tenants (tenants), or
-- for every tenant (all_tenants): exactly one of the three. A platform backend that submits
-- for many tenants holds one service key instead of one key per tenant.
ALTER TABLE kjs_api_keys
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN tenants text[],
    ADD COLUMN all_tenants boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT kjs_api_keys_acts_for
        CHECK (num_nonnulls(user_id, tenants) + all_tenants::int = 1),
    ADD CONSTRAINT kjs_api_keys_tenants_check
        CHECK (tenants IS NULL OR (cardinality(tenants) > 0 AND array_position(tenants, NULL) IS NULL));
