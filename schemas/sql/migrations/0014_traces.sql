-- 0014: the W3C traceparent a job was submitted with (or its apply span's, with tracing on),
-- and each execution's (its fire span's), so that a trace survives a restart, the outbox's
-- re-send, a lapsed lease and a retry (docs/tracing.md). NULL, which costs no bytes, for
-- every job submitted without a trace while tracing is off; 55 characters otherwise.
ALTER TABLE kjs_jobs ADD COLUMN traceparent text;
ALTER TABLE kjs_executions ADD COLUMN traceparent text;
