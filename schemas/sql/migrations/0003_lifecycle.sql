-- 0003: paused jobs, recorded skips (misfires and overlap), a buffered run.

-- A paused job keeps its next_run_at: on resume, the catch-up policy decides what to do
-- with the occurrences it missed.
ALTER TABLE kjs_jobs DROP CONSTRAINT kjs_jobs_status_check;
ALTER TABLE kjs_jobs ADD CONSTRAINT kjs_jobs_status_check
    CHECK (status IN ('scheduled', 'paused', 'queued', 'succeeded', 'failed', 'cancelled'));
ALTER TABLE kjs_jobs DROP CONSTRAINT kjs_jobs_next_run_iff_scheduled;
ALTER TABLE kjs_jobs ADD CONSTRAINT kjs_jobs_next_run_iff_scheduled
    CHECK ((status IN ('scheduled', 'paused')) = (next_run_at IS NOT NULL));
-- Occurrences skipped (misfired beyond the grace, or forbidden by the overlap policy) in all;
-- the most recent ones are also recorded as 'skipped' executions.
ALTER TABLE kjs_jobs ADD COLUMN skipped_runs integer NOT NULL DEFAULT 0
    CONSTRAINT kjs_jobs_skipped_runs_check CHECK (skipped_runs >= 0);
-- overlap = buffer_one: the occurrence waiting for the running one to finish.
ALTER TABLE kjs_jobs ADD COLUMN buffered_for timestamptz;

ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_status_check;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_status_check
    CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled',
                      'skipped'));
ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_finished;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_finished
    CHECK ((status IN ('succeeded', 'failed', 'cancelled', 'skipped')) = (finished_at IS NOT NULL));
ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_started;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_started
    CHECK (status IN ('pending', 'queued', 'cancelled', 'skipped') OR started_at IS NOT NULL);
ALTER TABLE kjs_executions DROP CONSTRAINT kjs_executions_worker;
ALTER TABLE kjs_executions ADD CONSTRAINT kjs_executions_worker
    CHECK (status IN ('pending', 'queued', 'cancelled', 'skipped') OR worker IS NOT NULL);
