-- kjs store schema: the state every numbered migration under migrations/ builds up to.
-- Keep it equal to the migrations (tests/integration/test_migrations.py checks it).

CREATE TABLE kjs_shards (
    shard       integer PRIMARY KEY CHECK (shard >= 0),
    -- Bumped by every new owner; every scheduler write for the shard is conditional on it.
    epoch       bigint  NOT NULL CHECK (epoch >= 1),
    owner       text    NOT NULL,
    assigned_at timestamptz NOT NULL DEFAULT now(),
    -- The partition count this epoch routes tenants by; NULL: KJS_COMMAND_PARTITIONS (0013).
    partitions  integer CHECK (partitions >= 1)
);

CREATE TABLE kjs_jobs (
    job_id          uuid PRIMARY KEY,
    user_id         text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    shard           integer NOT NULL CHECK (shard >= 0),
    name            text NOT NULL,
    idempotency_key text,
    schedule        jsonb NOT NULL CHECK (schedule->>'type' IN ('once', 'cron', 'interval')),
    target          jsonb NOT NULL CHECK (target ? 'type'),
    priority        text NOT NULL CHECK (priority IN ('critical', 'normal', 'low')),
    retry           jsonb NOT NULL,
    status          text NOT NULL,
    -- Set exactly while another occurrence is still to fire.
    next_run_at     timestamptz,
    run_count       integer NOT NULL DEFAULT 0 CHECK (run_count >= 0),
    source          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Occurrences skipped (misfired beyond the grace, or forbidden by the overlap policy) in
    -- all; the most recent ones are also recorded as 'skipped' executions.
    skipped_runs    integer NOT NULL DEFAULT 0
                    CONSTRAINT kjs_jobs_skipped_runs_check CHECK (skipped_runs >= 0),
    -- overlap = buffer_one: the occurrence waiting for the running one to finish.
    buffered_for    timestamptz,
    -- The trace the job was submitted in (W3C traceparent; NULL: none), 0014.
    traceparent     text,
    -- {"key": ..., "limit": N}: at most N executions with the key in flight (0010).
    concurrency     jsonb,
    CONSTRAINT kjs_jobs_status_check
        CHECK (status IN ('scheduled', 'paused', 'queued', 'succeeded', 'failed', 'cancelled')),
    -- A paused job keeps its next_run_at: on resume, the catch-up policy decides what to do
    -- with the occurrences it missed.
    CONSTRAINT kjs_jobs_next_run_iff_scheduled
        CHECK ((status IN ('scheduled', 'paused')) = (next_run_at IS NOT NULL)),
    CONSTRAINT kjs_jobs_idempotency UNIQUE (user_id, idempotency_key)
);

-- The shard timer's load query: what is due soon on this shard.
CREATE INDEX kjs_jobs_due ON kjs_jobs (shard, next_run_at) WHERE status = 'scheduled';
-- Listing a tenant's jobs with keyset pagination.
CREATE INDEX kjs_jobs_by_user ON kjs_jobs (user_id, created_at, job_id);
-- The console's filtered lists, by status, lane or schedule type (0009).
CREATE INDEX kjs_jobs_by_user_status ON kjs_jobs (user_id, status, created_at, job_id);
CREATE INDEX kjs_jobs_by_user_priority ON kjs_jobs (user_id, priority, created_at, job_id);
CREATE INDEX kjs_jobs_by_user_kind ON kjs_jobs (user_id, (schedule->>'type'), created_at, job_id);

CREATE TABLE kjs_executions (
    execution_id   uuid PRIMARY KEY,
    job_id         uuid NOT NULL REFERENCES kjs_jobs (job_id) ON DELETE CASCADE,
    user_id        text NOT NULL,
    shard          integer NOT NULL CHECK (shard >= 0),
    scheduled_for  timestamptz NOT NULL,
    attempt        integer NOT NULL CHECK (attempt >= 1),
    lane           text NOT NULL CHECK (lane IN ('critical', 'normal', 'low')),
    status         text NOT NULL,
    -- Outbox: NULL until Kafka acknowledged the due event; the next owner re-sends those.
    dispatched_at  timestamptz,
    started_at     timestamptz,
    finished_at    timestamptz,
    worker         text,
    lease_until    timestamptz,
    http_status    integer,
    output_excerpt text,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- When a retry may start (now + backoff); NULL means "at scheduled_for".
    due_at         timestamptz,
    -- The trace of this occurrence's runs (its fire span; NULL: none), 0014.
    traceparent    text,
    -- A run of a backfill (0011): a past occurrence run on request.
    backfill       boolean NOT NULL DEFAULT false,
    CONSTRAINT kjs_executions_status_check
        CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled',
                          'skipped')),
    -- Each occurrence's attempt is recorded once (invariant 2).
    CONSTRAINT kjs_executions_once UNIQUE (job_id, scheduled_for, attempt),
    CONSTRAINT kjs_executions_started
        CHECK (status IN ('pending', 'queued', 'cancelled', 'skipped') OR started_at IS NOT NULL),
    CONSTRAINT kjs_executions_finished CHECK (
        (status IN ('succeeded', 'failed', 'cancelled', 'skipped')) = (finished_at IS NOT NULL)
    ),
    CONSTRAINT kjs_executions_worker
        CHECK (status IN ('pending', 'queued', 'cancelled', 'skipped') OR worker IS NOT NULL),
    -- A serial backfill's later runs wait with no due_at until the previous one finishes.
    CONSTRAINT kjs_executions_pending_due
        CHECK (status <> 'pending' OR due_at IS NOT NULL OR backfill)
);

CREATE INDEX kjs_executions_undispatched ON kjs_executions (shard)
    WHERE dispatched_at IS NULL AND status = 'queued';
CREATE INDEX kjs_executions_by_job ON kjs_executions (job_id, created_at);
-- The shard timer's load query for attempts waiting on their backoff.
CREATE INDEX kjs_executions_pending ON kjs_executions (shard, due_at) WHERE status = 'pending';
-- The retention pruner's batches: finished executions, oldest first.
CREATE INDEX kjs_executions_finished ON kjs_executions (finished_at)
    WHERE finished_at IS NOT NULL;
-- The shard's lease reaper, every second (0007).
CREATE INDEX kjs_executions_leased ON kjs_executions (shard, lease_until) WHERE status = 'running';
-- The shard's concurrency slots (0010): in-flight and held executions by tenant. A held
-- execution is 'pending' with the reason in `error` (no other pending execution has one).
CREATE INDEX kjs_executions_slots ON kjs_executions (user_id)
    WHERE status IN ('queued', 'running') OR (status = 'pending' AND error IS NOT NULL);

-- A serial backfill's next run to release, in occurrence order (0011).
CREATE INDEX kjs_executions_backfill_waiting ON kjs_executions (job_id, scheduled_for)
    WHERE status = 'pending' AND due_at IS NULL;

-- API keys (0005). Only the sha256 of each key is stored; the key itself is shown once, by
-- `kjs keys create`. A key has a set of scopes and acts for one tenant (user_id), or (0008,
-- a service key) for a list of tenants or for all of them: exactly one of the three.
CREATE TABLE kjs_api_keys (
    key_id      uuid PRIMARY KEY,
    user_id     text,
    tenants     text[],
    all_tenants boolean NOT NULL DEFAULT false,
    key_hash    bytea NOT NULL,
    scopes      text[] NOT NULL,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT kjs_api_keys_hash_unique UNIQUE (key_hash),
    CONSTRAINT kjs_api_keys_hash_length CHECK (octet_length(key_hash) = 32),
    CONSTRAINT kjs_api_keys_scopes_check
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'admin']::text[]),
    CONSTRAINT kjs_api_keys_acts_for
        CHECK (num_nonnulls(user_id, tenants) + all_tenants::int = 1),
    CONSTRAINT kjs_api_keys_tenants_check
        CHECK (tenants IS NULL OR (cardinality(tenants) > 0 AND array_position(tenants, NULL) IS NULL))
);

CREATE INDEX kjs_api_keys_by_user ON kjs_api_keys (user_id, created_at);

-- Per-tenant daily usage (0006), for the executions-per-day quota; written by the owning shard.
CREATE TABLE kjs_tenant_usage (
    user_id     text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    day         date NOT NULL,
    executions  integer NOT NULL DEFAULT 0 CHECK (executions >= 0),
    PRIMARY KEY (user_id, day)
);

-- The outbox of jobs.events (0012): written in the transaction of each state change (when
-- KJS_EVENTS=on), published and deleted by the owning shard's relay, fenced, in seq order.
CREATE TABLE kjs_event_outbox (
    seq        bigserial PRIMARY KEY,
    shard      integer NOT NULL CHECK (shard >= 0),
    job_id     uuid NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX kjs_event_outbox_by_shard ON kjs_event_outbox (shard, seq);

-- `kjs shards resize` (0013): one row a resize; its step is where a re-run goes on.
CREATE TABLE kjs_resizes (
    resize_id        bigserial PRIMARY KEY,
    from_partitions  integer NOT NULL CHECK (from_partitions >= 1),
    to_partitions    integer NOT NULL,
    step             text NOT NULL CHECK (step IN ('started', 'grown', 'moved', 'done')),
    jobs_moved       integer,
    executions_moved integer,
    started_at       timestamptz NOT NULL DEFAULT now(),
    moved_at         timestamptz,
    finished_at      timestamptz,
    CONSTRAINT kjs_resizes_grows CHECK (to_partitions > from_partitions),
    CONSTRAINT kjs_resizes_finished CHECK ((step = 'done') = (finished_at IS NOT NULL))
);

CREATE UNIQUE INDEX kjs_resizes_one_unfinished ON kjs_resizes ((true)) WHERE finished_at IS NULL;

-- Named calendars (0011): exclusions (date ranges, cron rules) a tenant defines once and names
-- from many jobs; written by the API. The owning shard copies a calendar's rules into a job's
-- schedule when it stores the job (exclude.resolved).
CREATE TABLE kjs_calendars (
    user_id    text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    exclude    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);
