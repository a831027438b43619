-- 0010: concurrency limits. A job may carry {"key": ..., "limit": N}: at most N executions of
-- the tenant's jobs with that key are queued or running at once; the tenant's tier may cap
-- them all (max_running). The owning shard holds an execution over a limit back as 'pending'
-- with the reason in `error` (a held execution is the only pending one with an error), and
-- queues it when a slot frees (scheduler/concurrency.py).
ALTER TABLE kjs_jobs ADD COLUMN concurrency jsonb;
-- The shard's slot count, per tenant and key, of its in-flight and held executions.
CREATE INDEX kjs_executions_slots ON kjs_executions (user_id)
    WHERE status IN ('queued', 'running') OR (status = 'pending' AND error IS NOT NULL);
