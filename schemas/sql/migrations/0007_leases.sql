-- 0007: the shard's lease reaper looks for lapsed leases every second (scheduler.timer
-- REAP_INTERVAL_S); without an index that is a scan of the shard's executions, history included.
CREATE INDEX kjs_executions_leased ON kjs_executions (shard, lease_until) WHERE status = 'running';
