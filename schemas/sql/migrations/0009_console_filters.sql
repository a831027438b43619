-- 0009: the console's job list filters a tenant's jobs by status, lane (priority) or schedule
-- type, newest first, one page at a time (keyset on created_at, job_id). One index per filter
-- keeps every page of a filtered list an index range, however rare the value, at 100,000 jobs
-- per tenant and more (bench/console.py). The unfiltered list uses kjs_jobs_by_user.
CREATE INDEX kjs_jobs_by_user_status ON kjs_jobs (user_id, status, created_at, job_id);
CREATE INDEX kjs_jobs_by_user_priority ON kjs_jobs (user_id, priority, created_at, job_id);
CREATE INDEX kjs_jobs_by_user_kind ON kjs_jobs (user_id, (schedule->>'type'), created_at, job_id);
