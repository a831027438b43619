-- 0002: retries decided by the owning shard. A further attempt waits as 'pending' until its
-- due_at (now + backoff), when the shard's timer queues and dispatches it like a first fire.

-- NULL means "at scheduled_for" (first attempts); a pending retry always has one.
ALTER TABLE kjs_executions ADD COLUMN due_at timestamptz;

ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_status_check;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_status_check
    CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled'));
ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_started;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_started
    CHECK (status IN ('pending', 'queued', 'cancelled') OR started_at IS NOT NULL);
ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_worker;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_worker
    CHECK (status IN ('pending', 'queued', 'cancelled') OR worker IS NOT NULL);
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_pending_due
    CHECK (status <> 'pending' OR due_at IS NOT NULL);

-- The shard timer's load query for attempts waiting on their backoff.
CREATE INDEX kjs_executions_pending ON kjs_executions (shard, due_at) WHERE status = 'pending';
