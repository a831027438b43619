-- 0011: backfill runs. A backfill runs the past occurrences of a recurring job as executions
-- of those occurrences (scheduled_for = the occurrence, attempt 1), so kjs_executions_once
-- keeps each occurrence to one run however often the same backfill is asked for; `backfill`
-- marks them. A backfill under a serial overlap policy (forbid, replace, buffer_one) stores
-- its later runs 'pending' with no due_at yet: each is given one when the previous finishes.
ALTER TABLE kjs_executions ADD COLUMN backfill boolean NOT NULL DEFAULT false;
ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_pending_due;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_pending_due
    CHECK (status <> 'pending' OR due_at IS NOT NULL OR backfill);
-- A serial backfill's next run to release, in occurrence order.
CREATE INDEX kjs_executions_backfill_waiting ON kjs_executions (job_id, scheduled_for)
    WHERE status = 'pending' AND due_at IS NULL;

-- Named calendars: exclusions (date ranges, cron rules) a tenant defines once and names from
-- many jobs. The owning shard copies a calendar's rules into a job's schedule when it stores
-- the job (exclude.resolved), so a job fires the same whatever later happens to the calendar.
CREATE TABLE kjs_calendars (
    user_id    text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    exclude    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, name)
);
