-- 0004: execution-log retention. The pruner (workers/retention.py) deletes finished executions
-- oldest first in small batches; this index finds them without scanning the hot table.
-- Only finished rows have a finished_at (kjs_executions_finished), hence the partial index.
CREATE INDEX kjs_executions_finished ON kjs_executions (finished_at)
    WHERE finished_at IS NOT NULL;
