"""Every Postgres write a scheduler shard makes, each one fenced by the shard's epoch, and
the reads that feed them; one module a behaviour:

- ``shards``: claiming a shard, and the fence every write transaction starts with;
- ``jobs``: storing created jobs;
- ``lifecycle``: cancel, pause, resume, update and trigger;
- ``firing``: the due jobs, firing them into execution rows, the outbox;
- ``leases``: re-queueing executions whose worker's lease lapsed;
- ``results``: recording the workers' results;
- ``pending``: pending runs (retries, triggered runs, buffered runs): stored, loaded, queued;
- ``columns``: the arrays a batched (``unnest``) statement takes.

The values they take and return are in ``scheduler.model``; the SQL, by name, in
``schemas/sql/queries.sql``.
"""
