"""Workers: consume a lane's due events, claim each execution, run its target, report it.

A worker never writes an execution's final state: it reports a result event, and the
scheduler shard that owns the user records it (one writer per shard). A worker's own writes
are narrow: the claim (queued -> running, which makes each start at-most-once), the lease
heartbeat on the executions it is running (``lease_until``), and the retention pruner's
batched deletes of executions that finished long ago.
"""
