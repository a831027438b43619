-- 0006: per-tenant daily usage, for the executions-per-day quota. Written only by the shard
-- that owns the tenant, in the transaction that fires (or triggers) the runs it counts, so
-- a crash or a replay never counts a run twice. Only tenants with a daily limit get rows.
CREATE TABLE kjs_tenant_usage (
    user_id     text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    day         date NOT NULL,
    executions  integer NOT NULL DEFAULT 0 CHECK (executions >= 0),
    PRIMARY KEY (user_id, day)
);
