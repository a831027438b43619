"""Workers: consume a lane's due events, claim each execution, run its target, report it.

A worker never writes an execution's final state: it reports a result event, and the
scheduler shard that owns the user records it (one writer per shard). The only row a worker
touches is its claim, which makes the start of each execution at-most-once.
"""
