-- Every SQL statement kjs runs, by name (core/queries.py loads this file into QUERIES).
--
-- A name line, a comment saying what the statement does, the statement ended by ';'.
-- tests/integration/test_named_queries.py prepares each one on a migrated database and checks
-- that the code uses every name. Status and lane words are the ones of schemas/v1/statuses.py
-- (tests/integration/test_statuses.py checks the quoted ones); they are spelled out, not passed
-- as parameters, so that the partial indexes (WHERE status = 'pending', ...) serve them.
--
-- Sections follow the modules that run the statements.


-- ---------------------------------------------------------------------------------------------
-- The shard's fence (scheduler/store/shards.py)

-- name: claim_shard
-- Take ownership of a shard: bump its epoch (the new owner fences out the old one).
INSERT INTO kjs_shards (shard, epoch, owner) VALUES ($1, 1, $2)
ON CONFLICT (shard) DO UPDATE
    SET epoch = kjs_shards.epoch + 1, owner = EXCLUDED.owner, assigned_at = now()
RETURNING epoch, partitions;

-- name: reclaim_resized_shard
-- Take back a shard that a resize fenced and nobody claimed since (scheduler/resize.py): the
-- instance Kafka still assigns it to goes on with the new partition count.
UPDATE kjs_shards SET epoch = epoch + 1, owner = $2, assigned_at = now()
WHERE shard = $1 AND owner = 'kjs resize'
RETURNING epoch, partitions;

-- name: resized_shards
-- Which of the shards $1 a resize fenced and nobody took back yet (polled by each scheduler,
-- so that a shard with nothing to write learns of a resize too).
SELECT shard FROM kjs_shards WHERE shard = ANY($1::integer[]) AND owner = 'kjs resize';

-- name: shard_epoch
-- The shard's current epoch, locked FOR SHARE until the transaction ends: a new owner's bump
-- waits for this transaction, and every later one of the old owner sees the new epoch.
SELECT epoch FROM kjs_shards WHERE shard = $1 FOR SHARE;


-- ---------------------------------------------------------------------------------------------
-- Creating jobs (scheduler/store/jobs.py, scheduler/commands.py)

-- name: insert_jobs
-- Store a shard's created jobs ($1 the shard) in one statement; a repeat (same job_id, or
-- same user and idempotency key) is skipped. Returns the ids inserted.
INSERT INTO kjs_jobs (job_id, user_id, shard, name, idempotency_key, schedule,
                      target, priority, retry, status, next_run_at, created_at,
                      updated_at, source, traceparent, concurrency)
SELECT j, u, $1, n, k, s, t, p, r, 'scheduled', nx, c, c, src, tp, cc
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
            $7::jsonb[], $8::text[], $9::jsonb[], $10::timestamptz[],
            $11::timestamptz[], $12::text[], $13::text[], $14::jsonb[])
     AS t(j, u, n, k, s, t, p, r, nx, c, src, tp, cc)
ON CONFLICT DO NOTHING
RETURNING job_id;

-- name: job_exists
-- Whether a job is stored already (a redelivered create is not counted against quotas).
SELECT 1 FROM kjs_jobs WHERE job_id = $1;


-- ---------------------------------------------------------------------------------------------
-- Lifecycle: cancel, pause, resume, update, trigger (scheduler/store/lifecycle.py)

-- name: lock_tenant_job
-- A tenant's job, locked for a lifecycle change.
SELECT * FROM kjs_jobs WHERE job_id = $1 AND user_id = $2 FOR UPDATE;

-- name: cancel_job
-- A cancelled job has no next run.
UPDATE kjs_jobs SET status = 'cancelled', next_run_at = NULL, updated_at = now()
WHERE job_id = $1;

-- name: cancel_unstarted_executions
-- Cancel a job's executions that have not started. A worker's claim only takes 'queued' rows,
-- so this also wins inside the lead time.
UPDATE kjs_executions SET status = 'cancelled', finished_at = now()
WHERE job_id = $1 AND status IN ('pending', 'queued');

-- name: change_job
-- Set the columns a lifecycle change gives ($2 names them, $3 to $9 their values in the
-- order status, next_run_at, name, schedule, target, priority, retry); the others keep theirs.
UPDATE kjs_jobs
SET status      = CASE WHEN 'status' = ANY($2::text[]) THEN $3::text ELSE status END,
    next_run_at = CASE WHEN 'next_run_at' = ANY($2::text[]) THEN $4::timestamptz
                       ELSE next_run_at END,
    name        = CASE WHEN 'name' = ANY($2::text[]) THEN $5::text ELSE name END,
    schedule    = CASE WHEN 'schedule' = ANY($2::text[]) THEN $6::jsonb ELSE schedule END,
    target      = CASE WHEN 'target' = ANY($2::text[]) THEN $7::jsonb ELSE target END,
    priority    = CASE WHEN 'priority' = ANY($2::text[]) THEN $8::text ELSE priority END,
    retry       = CASE WHEN 'retry' = ANY($2::text[]) THEN $9::jsonb ELSE retry END,
    updated_at  = now()
WHERE job_id = $1
RETURNING status, next_run_at, schedule;

-- name: skip_runs_ahead_of_pause
-- Occurrences fired ahead (the lead) but not yet due: a pause lands before them, as it would
-- have before the lead existed. A worker's claim only takes 'queued' rows, so this wins until
-- the claim, a second before the instant. Not yet due: after $2, the shard's clock.
UPDATE kjs_executions SET status = 'skipped', finished_at = now(),
       error = 'paused: the job was paused before this run started'
WHERE job_id = $1 AND status = 'queued' AND scheduled_for > $2::timestamptz;

-- name: requeue_finished_once_job
-- A triggered run makes a finished one-time job 'queued' again.
UPDATE kjs_jobs SET status = 'queued', updated_at = now()
WHERE job_id = $1 AND status IN ('succeeded', 'failed');


-- ---------------------------------------------------------------------------------------------
-- Firing due jobs (scheduler/store/firing.py)

-- name: due_jobs
-- The shard's scheduled jobs due by $2 (the timer's window).
SELECT job_id, next_run_at, schedule FROM kjs_jobs
WHERE shard = $1 AND status = 'scheduled' AND next_run_at <= $2;

-- name: lock_firing_jobs
-- Lock the due jobs among $1 that are still scheduled and due by $3, with whether a previous
-- run is unfinished (for the overlap policy).
SELECT j.job_id, j.user_id, j.schedule, j.target, j.priority, j.next_run_at,
       j.created_at, j.run_count, j.buffered_for, j.traceparent, j.concurrency,
       EXISTS (SELECT 1 FROM kjs_executions e WHERE e.job_id = j.job_id
               AND e.status IN ('pending', 'queued', 'running')) AS busy
FROM kjs_jobs j
WHERE j.job_id = ANY($1::uuid[]) AND j.shard = $2 AND j.status = 'scheduled'
  AND j.next_run_at <= $3
FOR UPDATE OF j;

-- name: cancel_replaced_executions
-- overlap = replace: the jobs' unfinished executions give way to the new run; not a
-- backfill's (runs asked for explicitly, and paid for in the day's quota).
UPDATE kjs_executions SET status = 'cancelled', finished_at = now(),
       error = 'replaced by a newer run (overlap = replace)'
WHERE job_id = ANY($1::uuid[]) AND status IN ('pending', 'queued', 'running')
  AND NOT backfill;

-- name: insert_fired_executions
-- The fired occurrences ('queued') and the recorded skips ('skipped', finished, with the
-- reason), in one statement; an occurrence fired before is skipped.
INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                            attempt, lane, status, due_at, finished_at, error, traceparent)
SELECT e, j, u, $4, s, a, l, st, d,
       CASE WHEN st = 'skipped' THEN now() END, err, tp
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $5::timestamptz[], $6::int[],
            $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::text[])
     AS t(e, j, u, s, a, l, st, d, err, tp)
ON CONFLICT DO NOTHING;

-- name: advance_fired_jobs
-- Move each fired job to its next run ('queued' when none is left), counting its runs and
-- skips, and remember a buffered occurrence.
UPDATE kjs_jobs AS j
SET next_run_at = t.n,
    status = CASE WHEN t.n IS NULL THEN 'queued' ELSE 'scheduled' END,
    run_count = j.run_count + t.runs,
    skipped_runs = j.skipped_runs + t.skips,
    buffered_for = COALESCE(t.buf, j.buffered_for),
    updated_at = now()
FROM unnest($1::uuid[], $2::timestamptz[], $3::int[], $4::int[], $5::timestamptz[])
     AS t(id, n, runs, skips, buf)
WHERE j.job_id = t.id;

-- name: undispatched_executions
-- The outbox: the shard's queued executions written more than $2 seconds ago whose due event
-- Kafka never acknowledged. An age of the row, so measured on the clock that stamped it
-- (created_at is the database's now()), not the scheduler's.
SELECT e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane, j.target,
       e.due_at, e.traceparent
FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
WHERE e.shard = $1 AND e.status = 'queued' AND e.dispatched_at IS NULL
  AND e.created_at < now() - make_interval(secs => $2)
ORDER BY e.scheduled_for;

-- name: mark_dispatched
-- Kafka acknowledged these executions' due events: out of the outbox.
-- SKIP LOCKED: a row another transaction holds is being claimed by a worker (or cancelled,
-- or its result recorded), so it leaves 'queued' and the outbox (which re-sends only queued
-- rows) never sees it again; if it stays queued, its due event is re-sent, which is harmless.
-- Waiting instead deadlocked with the workers' claims, which lock the same rows in another
-- order (seen at 3,500 jobs/s: a second of deadlock_timeout for both each time).
UPDATE kjs_executions SET dispatched_at = now()
WHERE execution_id IN (
    SELECT execution_id FROM kjs_executions
     WHERE execution_id = ANY($1::uuid[]) AND dispatched_at IS NULL
       FOR UPDATE SKIP LOCKED
);

-- name: count_overdue
-- Jobs and pending runs due more than a second before $2 (the shard's clock) and not fired:
-- the stage's depth.
SELECT (SELECT count(*) FROM kjs_jobs WHERE shard = $1 AND status = 'scheduled'
          AND next_run_at < $2::timestamptz - interval '1 second')
     + (SELECT count(*) FROM kjs_executions WHERE shard = $1 AND status = 'pending'
          AND due_at < $2::timestamptz - interval '1 second' AND error IS NULL);


-- ---------------------------------------------------------------------------------------------
-- Lapsed leases (scheduler/store/leases.py)

-- name: any_lease_lapsed
-- Whether a running execution of the shard has a lapsed lease, one whose lease_until is
-- before $2 (a test's clock), or before Postgres's now() when $2 is null: the clock the
-- workers stamp leases with. One indexed read.
SELECT EXISTS (SELECT 1 FROM kjs_executions WHERE shard = $1 AND status = 'running'
               AND lease_until < COALESCE($2::timestamptz, now()));

-- name: requeue_lapsed_executions
-- Put the shard's running executions whose lease lapsed (before $2, or Postgres's now() when
-- $2 is null, as any_lease_lapsed) back to 'queued', with their id.
UPDATE kjs_executions AS e
SET status = 'queued', dispatched_at = NULL, started_at = NULL, worker = NULL,
    lease_until = NULL
FROM kjs_jobs AS j
WHERE e.shard = $1 AND e.status = 'running'
  AND e.lease_until < COALESCE($2::timestamptz, now())
  AND j.job_id = e.job_id
RETURNING e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane,
          j.target, e.due_at, e.traceparent;


-- ---------------------------------------------------------------------------------------------
-- Recording results (scheduler/store/results.py)

-- name: record_result
-- Move a queued or running execution to its result; no row back means already recorded.
UPDATE kjs_executions
SET status = $2, started_at = COALESCE($3, started_at), finished_at = $4,
    worker = COALESCE(worker, $5), http_status = $6, output_excerpt = $7,
    error = $8, lease_until = NULL
WHERE execution_id = $1 AND status IN ('queued', 'running')
RETURNING job_id, attempt, scheduled_for, lane, user_id, traceparent;

-- name: lock_job_for_result
-- The job of a recorded result, locked: its status and retry policy.
SELECT status, retry FROM kjs_jobs WHERE job_id = $1 FOR UPDATE;

-- name: buffered_executions
-- Those of $1 whose job has a buffered run to release (overlap = buffer_one), or a serial
-- backfill's run waiting for the previous one.
SELECT e.execution_id FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
WHERE e.execution_id = ANY($1::uuid[])
  AND (j.buffered_for IS NOT NULL
       OR EXISTS (SELECT 1 FROM kjs_executions w
                  WHERE w.job_id = e.job_id AND w.status = 'pending' AND w.due_at IS NULL));

-- name: record_successes
-- Record successful results in one statement; returns the job of each execution moved.
UPDATE kjs_executions AS e
SET status = 'succeeded', started_at = COALESCE(t.started, e.started_at),
    finished_at = t.finished, worker = COALESCE(e.worker, t.worker),
    http_status = t.http, output_excerpt = t.excerpt, error = NULL,
    lease_until = NULL
FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::text[],
            $5::int[], $6::text[])
     AS t(id, started, finished, worker, http, excerpt)
WHERE e.execution_id = t.id AND e.status IN ('queued', 'running')
RETURNING e.job_id;

-- name: settle_once_jobs
-- A one-time job takes its occurrence's outcome ($2). Only a one-time job is 'queued' (its
-- single occurrence is out); recurring and cancelled ones are left as they are.
UPDATE kjs_jobs SET status = $2, updated_at = now()
WHERE job_id = ANY($1::uuid[]) AND status = 'queued';


-- ---------------------------------------------------------------------------------------------
-- Pending runs: retries, triggered runs, buffered runs (scheduler/store/pending.py)

-- name: insert_retry
-- The next attempt of a failed one, 'pending' until the backoff ($8 seconds) after $9 (the
-- shard's clock) has passed, in the failed one's trace ($10). Returns when it is due;
-- nothing when it was stored before.
INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                            attempt, lane, status, due_at, traceparent)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending',
        $9::timestamptz + make_interval(secs => $8), $10)
ON CONFLICT DO NOTHING
RETURNING due_at;

-- name: take_buffered_run
-- overlap = buffer_one: clear the job's buffered occurrence and return it, if it had one.
WITH old AS (SELECT buffered_for FROM kjs_jobs WHERE job_id = $1)
UPDATE kjs_jobs AS j SET buffered_for = NULL FROM old
WHERE j.job_id = $1 AND old.buffered_for IS NOT NULL
RETURNING old.buffered_for;

-- name: insert_buffered_run
-- The buffered occurrence ($5) as a 'pending' first attempt, due at $7 (the shard's clock)
-- or at its time, whichever is later. Returns when it is due; nothing when it was stored
-- before.
INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                            attempt, lane, status, due_at)
VALUES ($1, $2, $3, $4, $5, 1, $6, 'pending', GREATEST($7::timestamptz, $5))
ON CONFLICT DO NOTHING
RETURNING due_at;

-- name: insert_triggered_run
-- An extra run of a job, an occurrence of its own at $5, 'pending' until then, in the trace
-- of the trigger command ($7).
INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                            attempt, lane, status, due_at, traceparent)
VALUES ($1, $2, $3, $4, $5, 1, $6, 'pending', $5, $7)
ON CONFLICT DO NOTHING;

-- name: insert_backfill_runs
-- A backfill's runs of the occurrences $5, 'pending' first attempts marked as backfills, due
-- at $6 (NULL: a serial backfill's run waiting for the previous one). kjs_executions_once
-- leaves an occurrence that has an execution (it ran or runs, or an earlier backfill took it)
-- as it is; one recorded as skipped runs now. Returns the runs stored.
INSERT INTO kjs_executions (execution_id, job_id, user_id, shard, scheduled_for,
                            attempt, lane, status, due_at, backfill)
SELECT t.id, $2, $3, $4, t.at, 1, $7, 'pending', t.due, true
FROM unnest($1::uuid[], $5::timestamptz[], $6::timestamptz[]) AS t(id, at, due)
ON CONFLICT ON CONSTRAINT kjs_executions_once DO UPDATE
SET status = 'pending', due_at = EXCLUDED.due_at, backfill = true, finished_at = NULL,
    error = NULL
WHERE kjs_executions.status = 'skipped'
RETURNING execution_id, due_at;

-- name: release_backfill_run
-- A serial backfill's next waiting run of job $1, due at $2; nothing while a backfill run of
-- the job is still out (due, queued or running), so they run one at a time, in order.
UPDATE kjs_executions SET due_at = $2
WHERE execution_id = (SELECT execution_id FROM kjs_executions
                      WHERE job_id = $1 AND status = 'pending' AND due_at IS NULL
                      ORDER BY scheduled_for LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM kjs_executions
                  WHERE job_id = $1 AND backfill
                    AND (status IN ('queued', 'running')
                         OR (status = 'pending' AND due_at IS NOT NULL)))
RETURNING execution_id, due_at;

-- name: due_pending_runs
-- The shard's pending runs due by $2 (the timer's window); not those held for a concurrency
-- slot (an error says why), which wait for one to free (release_held_executions).
SELECT execution_id, due_at FROM kjs_executions
WHERE shard = $1 AND status = 'pending' AND due_at <= $2 AND error IS NULL;

-- name: queue_pending_runs
-- Move the due pending runs among $1 to 'queued'; returns what to dispatch, with the job's
-- concurrency (the caller holds back those over a limit: hold_executions).
UPDATE kjs_executions AS e SET status = 'queued'
FROM kjs_jobs AS j
WHERE e.execution_id = ANY($1::uuid[]) AND e.shard = $2 AND e.status = 'pending'
  AND e.due_at <= $3 AND e.error IS NULL AND j.job_id = e.job_id
RETURNING e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane,
          j.target, e.due_at, e.traceparent, j.concurrency;


-- ---------------------------------------------------------------------------------------------
-- State-change events, KJS_EVENTS=on (scheduler/store/events.py, scheduler/events.py)

-- fragment: execution_event
-- The jobs.events value of a change of execution row e, of type ev.type (each statement
-- names it), as schemas/v1/state_events.py's StateEvent; the event id is fixed here, once, so
-- a redelivery repeats it. Built from rows (column names, not quoted keys).
(SELECT to_jsonb(t) FROM (
    SELECT 1 AS version, gen_random_uuid() AS event_id, now() AS occurred_at, ev.type,
           e.job_id, e.user_id, e.shard,
           (SELECT jsonb_strip_nulls(to_jsonb(x)) FROM (
                SELECT e.execution_id, e.attempt, e.scheduled_for, e.lane, e.status,
                       e.started_at, e.finished_at, e.worker, e.http_status,
                       CASE WHEN e.status = 'failed' THEN e.error END AS error,
                       CASE WHEN e.status IN ('skipped', 'cancelled') THEN e.error END AS reason,
                       CASE WHEN e.status = 'pending' THEN e.due_at END AS retry_at
            ) AS x) AS execution
) AS t);

-- name: insert_execution_events
-- An event ($1 its type, or null for 'execution.<status>') for each execution among $2 that
-- this transaction wrote (xmin: a row it did not change, such as a redelivered result's, gets
-- none), into the outbox.
INSERT INTO kjs_event_outbox (shard, job_id, payload)
SELECT e.shard, e.job_id, {{execution_event}}
FROM kjs_executions AS e,
     LATERAL (SELECT COALESCE($1::text, 'execution.' || e.status) AS type) AS ev
WHERE e.execution_id = ANY($2::uuid[]) AND e.xmin = pg_current_xact_id()::xid
ORDER BY e.scheduled_for, e.attempt;

-- name: insert_job_execution_events
-- As insert_execution_events, for the executions of the jobs among $2 that this transaction
-- wrote, in status $3 (a change that names jobs, not executions: cancel, pause, fire).
INSERT INTO kjs_event_outbox (shard, job_id, payload)
SELECT e.shard, e.job_id, {{execution_event}}
FROM kjs_executions AS e,
     LATERAL (SELECT COALESCE($1::text, 'execution.' || e.status) AS type) AS ev
WHERE e.job_id = ANY($2::uuid[]) AND e.status = $3
  AND e.xmin = pg_current_xact_id()::xid
ORDER BY e.scheduled_for, e.attempt;

-- name: changed_jobs
-- The jobs among $1 that this transaction wrote (xmin), in one of the statuses $2 (null: any),
-- for their events (scheduler/store/events.py redacts the target).
SELECT job_id, user_id, shard, name, status, schedule, target, priority, retry, next_run_at
FROM kjs_jobs
WHERE job_id = ANY($1::uuid[]) AND xmin = pg_current_xact_id()::xid
  AND ($2::text[] IS NULL OR status = ANY($2::text[]))
ORDER BY created_at, job_id;

-- name: insert_events
-- Events built in Python ($1 their shards, $2 their jobs, $3 their values) into the outbox,
-- each given its id and time here.
INSERT INTO kjs_event_outbox (shard, job_id, payload)
SELECT s, j, p || (SELECT to_jsonb(x) FROM (
           SELECT 1 AS version, gen_random_uuid() AS event_id, now() AS occurred_at,
                  s AS shard) AS x)
FROM unnest($1::int[], $2::uuid[], $3::jsonb[]) WITH ORDINALITY AS t(s, j, p, n)
ORDER BY n;

-- name: outbox_batch
-- The relay's next batch: the oldest $2 events of shard $1, their values as the text Kafka
-- gets (no decoding and re-encoding on the way).
SELECT seq, job_id, payload::text AS payload FROM kjs_event_outbox
WHERE shard = $1 ORDER BY seq LIMIT $2;

-- name: delete_published_events
-- Kafka acknowledged these events ($1 their seq): out of the outbox.
DELETE FROM kjs_event_outbox WHERE seq = ANY($1::bigint[]);


-- ---------------------------------------------------------------------------------------------
-- Concurrency slots (scheduler/concurrency.py)

-- name: count_slots
-- The in-flight ('queued', 'running') and held executions of the tenants $1, by tenant and
-- concurrency key (null: the job has none). kjs_executions_slots serves it.
SELECT e.user_id, j.concurrency->>'key' AS key,
       count(*) FILTER (WHERE e.status IN ('queued', 'running')) AS running,
       count(*) FILTER (WHERE e.status = 'pending') AS held
FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
WHERE e.user_id = ANY($1::text[])
  AND (e.status IN ('queued', 'running') OR (e.status = 'pending' AND e.error IS NOT NULL))
GROUP BY e.user_id, j.concurrency->>'key';

-- name: hold_executions
-- Hold back the executions among $1 (just queued or just fired) for a slot: 'pending' since
-- $3 (when they were due), with the reason $2 each.
UPDATE kjs_executions AS e
SET status = 'pending', error = t.reason, due_at = COALESCE(e.due_at, e.scheduled_for),
    dispatched_at = NULL
FROM unnest($1::uuid[], $2::text[]) AS t(id, reason)
WHERE e.execution_id = t.id AND e.status = 'queued';

-- name: any_held
-- Whether the shard holds an execution back for a concurrency slot.
SELECT EXISTS (SELECT 1 FROM kjs_executions WHERE shard = $1 AND status = 'pending'
               AND error IS NOT NULL);

-- name: lock_held_executions
-- The shard's held executions, the longest-waiting first (up to $2), locked, with their
-- job's concurrency: candidates for the slots that freed.
SELECT e.execution_id, e.job_id, e.user_id, e.attempt, e.scheduled_for, e.lane,
       j.target, e.due_at, e.traceparent, j.concurrency
FROM kjs_executions e JOIN kjs_jobs j USING (job_id)
WHERE e.shard = $1 AND e.status = 'pending' AND e.error IS NOT NULL
ORDER BY e.due_at, e.execution_id
LIMIT $2
FOR UPDATE OF e;

-- name: release_held_executions
-- Held executions that got a slot: 'queued', to dispatch, their reason cleared.
UPDATE kjs_executions SET status = 'queued', error = NULL
WHERE execution_id = ANY($1::uuid[]) AND status = 'pending';


-- ---------------------------------------------------------------------------------------------
-- Quotas (core/quotas.py, scheduler/daily_budget.py, api/queries.py)

-- name: count_active_jobs
-- The tenant's active jobs (scheduled, paused or queued), counted up to $2.
SELECT count(*) FROM (
    SELECT 1 FROM kjs_jobs
    WHERE user_id = $1 AND status IN ('scheduled', 'paused', 'queued')
    LIMIT $2
) active;

-- name: daily_usage
-- The tenant's runs counted on a UTC day.
SELECT executions FROM kjs_tenant_usage WHERE user_id = $1 AND day = $2;

-- name: create_usage_rows
-- The day's usage rows of the limited tenants, created (at 0) if missing. Created first, then
-- locked (two statements: the lock needs a snapshot that sees a row another transaction
-- inserted meanwhile), so a trigger applied meanwhile by the same shard waits for the fire,
-- and never counts past it. Usage rows are always locked after the job rows, by the fire and
-- by a trigger, so the two cannot deadlock.
INSERT INTO kjs_tenant_usage (user_id, day, executions)
SELECT u, $1, 0 FROM unnest($2::text[]) AS t(u)
ON CONFLICT DO NOTHING;

-- name: lock_usage_rows
-- The day's counts of the limited tenants, locked until the fire commits.
SELECT user_id, executions FROM kjs_tenant_usage
WHERE day = $1 AND user_id = ANY($2::text[])
FOR UPDATE;

-- name: count_usage
-- Add the runs each tenant spends on the day.
INSERT INTO kjs_tenant_usage (user_id, day, executions)
SELECT u, $2, n FROM unnest($1::text[], $3::int[]) AS t(u, n)
ON CONFLICT (user_id, day) DO UPDATE
    SET executions = kjs_tenant_usage.executions + EXCLUDED.executions;

-- name: take_one_run
-- One run more, unless the day's limit ($3) is reached: no row back means refused.
INSERT INTO kjs_tenant_usage (user_id, day, executions) VALUES ($1, $2, 1)
ON CONFLICT (user_id, day) DO UPDATE SET executions = kjs_tenant_usage.executions + 1
WHERE kjs_tenant_usage.executions < $3
RETURNING executions;

-- name: take_runs
-- $4 runs more (a backfill's), unless they would pass the day's limit ($3): no row back means
-- refused, all of them.
INSERT INTO kjs_tenant_usage (user_id, day, executions) VALUES ($1, $2, $4)
ON CONFLICT (user_id, day) DO UPDATE SET executions = kjs_tenant_usage.executions + $4
WHERE kjs_tenant_usage.executions + $4 <= $3
RETURNING executions;


-- ---------------------------------------------------------------------------------------------
-- The API's reads (api/queries.py)

-- fragment: jobs_as_shown
-- Every job with its latest attempt, by creation (the same-transaction ties go to the later
-- occurrence); a queued job whose latest attempt runs shows 'running'. The API's job views
-- (get_job, list_jobs) select from it.
SELECT j.job_id, j.user_id, j.name, j.next_run_at, j.run_count, j.created_at,
       j.schedule, j.target, j.priority, j.retry, j.idempotency_key, j.concurrency,
       CASE WHEN j.status = 'queued' AND le.status = 'running' THEN 'running'
            ELSE j.status END AS status, j.status AS stored_status,
       le.execution_id AS le_execution_id, le.scheduled_for AS le_scheduled_for,
       le.attempt AS le_attempt, le.lane AS le_lane, le.status AS le_status,
       le.dispatched_at AS le_dispatched_at, le.started_at AS le_started_at,
       le.finished_at AS le_finished_at, le.worker AS le_worker,
       le.http_status AS le_http_status, le.output_excerpt AS le_output_excerpt,
       le.error AS le_error
FROM kjs_jobs j
LEFT JOIN LATERAL (
    SELECT * FROM kjs_executions e
    WHERE e.job_id = j.job_id
    ORDER BY e.created_at DESC, e.scheduled_for DESC, e.attempt DESC
    LIMIT 1
) le ON true;

-- name: get_job
-- A job as the API shows it (the condition reaches kjs_jobs' primary key).
SELECT * FROM ({{jobs_as_shown}}) jobs
WHERE jobs.job_id = $1;

-- name: list_jobs
-- A page of a tenant's jobs as the API shows them, newest first, after the cursor ($2, $3),
-- filtered when given by the shown status $4, the lane $5, the schedule type $6 and a
-- lower-cased part of the name $7. The row comparison is what lets kjs_jobs_by_user (or
-- 0009's indexes, for a lane or a schedule type) serve every page.
SELECT * FROM ({{jobs_as_shown}}) jobs
WHERE jobs.user_id = $1 AND (jobs.created_at, jobs.job_id) < ($2, $3)
  AND ($4::text IS NULL OR jobs.status = $4)
  -- The same filter on the stored status ('running' is stored as 'queued'): a plain column,
  -- so with the value known the planner takes 0009's status index instead of computing the
  -- shown status of every job of the tenant.
  AND ($4::text IS NULL OR jobs.stored_status = CASE WHEN $4 = 'running' THEN 'queued' ELSE $4 END)
  AND ($5::text IS NULL OR jobs.priority = $5)
  AND ($6::text IS NULL OR jobs.schedule->>'type' = $6)
  AND ($7::text IS NULL OR strpos(lower(jobs.name), $7) > 0)
ORDER BY jobs.created_at DESC, jobs.job_id DESC
LIMIT $8;

-- name: job_owner
-- A job's tenant and status: all that cancel and the executions listing need (a backfill
-- also checks its range against the schedule).
SELECT user_id, status, schedule, created_at FROM kjs_jobs WHERE job_id = $1;

-- name: list_executions
-- A page of a job's executions, newest first, after the cursor ($2, $3).
SELECT execution_id, scheduled_for, attempt, lane, status, dispatched_at, started_at,
       finished_at, worker, http_status, output_excerpt, error, created_at, due_at
FROM kjs_executions
WHERE job_id = $1 AND (created_at, execution_id) < ($2, $3)
ORDER BY created_at DESC, execution_id DESC
LIMIT $4;

-- name: get_execution
-- One execution with everything stored about it.
SELECT execution_id, job_id, user_id, shard, scheduled_for, attempt, lane, status,
       dispatched_at, started_at, finished_at, worker, lease_until, http_status,
       output_excerpt, error, created_at, due_at, backfill
FROM kjs_executions
WHERE execution_id = $1;

-- name: list_shards
-- Every shard with its owner and epoch, for the console's pipeline page.
SELECT shard, epoch, owner, assigned_at FROM kjs_shards ORDER BY shard;

-- name: ping
-- Whether Postgres answers (the readiness checks of the API, the scheduler and the workers,
-- and infra's wait for a starting server).
SELECT 1;


-- ---------------------------------------------------------------------------------------------
-- API keys (api/keys.py)

-- name: insert_api_key
-- A new key's hash, for one tenant ($2), a list of tenants ($3) or all ($4).
INSERT INTO kjs_api_keys (key_id, user_id, tenants, all_tenants, key_hash, scopes, name)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: list_api_keys
-- Every key, or those acting for the tenant $1 (service keys covering it included).
SELECT key_id, user_id, tenants, all_tenants, scopes, name, created_at, revoked_at
FROM kjs_api_keys
WHERE $1::text IS NULL OR user_id = $1 OR $1 = ANY(tenants) OR all_tenants
ORDER BY user_id NULLS LAST, created_at;

-- name: revoke_api_key
-- Revoke a live key.
UPDATE kjs_api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL;

-- name: find_api_key
-- The key with this hash, revoked or not (every authenticated request, cached).
SELECT key_id, user_id, tenants, all_tenants, key_hash, scopes, revoked_at
FROM kjs_api_keys WHERE key_hash = $1;


-- ---------------------------------------------------------------------------------------------
-- The workers (workers/claims.py, workers/leases.py, workers/retention.py)

-- fragment: claim_update
-- Claim the queued ones among $1, each with its lease ($2 seconds), for the worker $3. Per
-- row: UPDATE ... SET status = 'running' WHERE execution_id = $1 AND status = 'queued'. Rows
-- that are not queued any more are simply not returned.
UPDATE kjs_executions AS e
   SET status = 'running',
       -- Claimed up to a second ahead: the run starts on its instant (the result then
       -- records the real start).
       started_at = GREATEST(now(), e.scheduled_for, e.due_at),
       worker = $3,
       lease_until = now() + make_interval(secs => c.lease_s)
  FROM unnest($1::uuid[], $2::float8[]) AS c (execution_id, lease_s)
 WHERE e.execution_id = c.execution_id
   -- IS TRUE: a plain status = 'queued' let the planner read every queued and running row
   -- through kjs_executions_slots (whose rows its statistics, always behind on this table,
   -- put at a dozen) and hash them against the ids: at 500 jobs/s, 240 blocks per claim
   -- statement, half of Postgres's CPU. The condition, not provable by the partial index,
   -- leaves the primary key to find each id.
   AND (e.status = 'queued') IS TRUE;

-- name: claim_executions
-- claim_update (see it), returning the claimed rows.
{{claim_update}}
RETURNING e.execution_id, e.started_at, e.lease_until;

-- name: claim_executions_with_events
-- claim_update with KJS_EVENTS=on: the same statement also writes each claimed execution's
-- 'execution.started' event into the outbox, so the event commits with the claim.
WITH e AS (
    {{claim_update}}
    RETURNING e.*
), events AS (
    INSERT INTO kjs_event_outbox (shard, job_id, payload)
    SELECT e.shard, e.job_id, {{execution_event}}
      FROM e, LATERAL (SELECT 'execution.started' AS type) AS ev
)
SELECT execution_id, started_at, lease_until FROM e;

-- name: extend_leases
-- Extend the leases of the worker's ($2) running executions among $1, each by its $3 seconds.
-- SKIP LOCKED: a heartbeat never waits on the shard. A row it finds locked is being written
-- by its owner (recording its result, almost always), so there is nothing to extend, and a
-- heartbeat that waited would deadlock with a bulk result write locking the same rows in
-- another order. A running lease skipped this way is extended by the next beat.
WITH mine AS (
    SELECT e.execution_id, h.secs
      FROM kjs_executions AS e
      JOIN unnest($1::uuid[], $3::float8[]) AS h (execution_id, secs) USING (execution_id)
     WHERE e.status = 'running'
       AND e.worker = $2
       FOR UPDATE OF e SKIP LOCKED
)
UPDATE kjs_executions AS e
   SET lease_until = now() + make_interval(secs => mine.secs)
  FROM mine
 WHERE e.execution_id = mine.execution_id
RETURNING e.execution_id;

-- name: prune_executions
-- Delete up to $2 executions finished before $1, oldest first, passing over rows another
-- transaction holds. Only finished rows (succeeded, failed, cancelled, skipped) have a
-- finished_at: the CHECK constraint kjs_executions_finished says so, so this is "finished
-- before the cutoff", for every finished status there is or will be. The partial index
-- kjs_executions_finished serves it.
DELETE FROM kjs_executions
 WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM kjs_executions
         WHERE finished_at < $1
         ORDER BY finished_at
         LIMIT $2
           FOR UPDATE SKIP LOCKED));


-- ---------------------------------------------------------------------------------------------
-- The migration runner (core/db.py)

-- name: lock_migrations
-- One migrating process at a time (a transaction-level advisory lock).
SELECT pg_advisory_xact_lock(hashtext('kjs-migrate'));

-- name: create_migrations_table
-- Where the applied migrations are recorded.
CREATE TABLE IF NOT EXISTS kjs_schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
-- The versions applied so far.
SELECT version FROM kjs_schema_migrations;

-- name: record_migration
-- A migration applied.
INSERT INTO kjs_schema_migrations (version, name) VALUES ($1, $2);


-- ---------------------------------------------------------------------------------------------
-- The local Postgres's bootstrap (infra/database.py), on the cluster's "postgres" database

-- name: role_exists
-- Whether the role $1 exists.
SELECT 1 FROM pg_roles WHERE rolname = $1;

-- name: database_exists
-- Whether the database $1 exists.
SELECT 1 FROM pg_database WHERE datname = $1;


-- ---------------------------------------------------------------------------------------------
-- Resizing the shards (scheduler/store/resize.py, scheduler/resize.py)

-- name: resize_try_lock
-- One `kjs shards resize` at a time: a session lock, released when its connection ends.
SELECT pg_try_advisory_lock(7431013);

-- name: resize_unfinished
-- The resize that is started and not done (a crash left it, or it is running).
SELECT resize_id, from_partitions, to_partitions, step FROM kjs_resizes
WHERE finished_at IS NULL;

-- name: resize_start
-- Record a new resize; the unique index refuses a second unfinished one.
INSERT INTO kjs_resizes (from_partitions, to_partitions, step) VALUES ($1, $2, 'started')
RETURNING resize_id;

-- name: resize_step
-- Record that a resize got past a step.
UPDATE kjs_resizes SET step = $2 WHERE resize_id = $1;

-- name: resize_fence_shards
-- Bump the epoch of every shard 0..$1-1 (creating the new ones) under the resize's name, with
-- the new count: every old owner's next write is fenced, and waits for the move to commit.
INSERT INTO kjs_shards (shard, epoch, owner, partitions)
SELECT s, 1, 'kjs resize', $1 FROM generate_series(0, $1 - 1) AS s
ON CONFLICT (shard) DO UPDATE
    SET epoch = kjs_shards.epoch + 1, owner = 'kjs resize', partitions = $1,
        assigned_at = now();

-- name: resize_job_tenants
-- Each tenant's jobs per shard, for the plan and the move.
SELECT user_id, shard, count(*) AS jobs FROM kjs_jobs GROUP BY user_id, shard;

-- name: resize_execution_tenants
-- Each tenant's unfinished executions per shard, for the plan and the move.
SELECT user_id, shard, count(*) AS executions FROM kjs_executions
WHERE status IN ('pending', 'queued', 'running') GROUP BY user_id, shard;

-- name: resize_move_jobs
-- Move each tenant's jobs to its shard under the new count ($1 tenants, $2 their shards).
UPDATE kjs_jobs AS j SET shard = m.shard
FROM unnest($1::text[], $2::integer[]) AS m (user_id, shard)
WHERE j.user_id = m.user_id AND j.shard <> m.shard;

-- name: resize_move_executions
-- Move each tenant's unfinished executions likewise; finished ones are history and stay.
UPDATE kjs_executions AS e SET shard = m.shard
FROM unnest($1::text[], $2::integer[]) AS m (user_id, shard)
WHERE e.user_id = m.user_id AND e.shard <> m.shard
  AND e.status IN ('pending', 'queued', 'running');

-- name: resize_moved
-- Record the move, in its own transaction.
UPDATE kjs_resizes SET step = 'moved', moved_at = now(), jobs_moved = $2, executions_moved = $3
WHERE resize_id = $1;

-- name: resize_unclaimed_shards
-- The shards 0..$1-1 that no scheduler holds (none claimed it, or the resize holds it).
SELECT s AS shard FROM generate_series(0, $1 - 1) AS s
WHERE NOT EXISTS (SELECT 1 FROM kjs_shards WHERE shard = s AND owner <> 'kjs resize')
ORDER BY s;

-- name: resize_done
-- Record the end of a resize.
UPDATE kjs_resizes SET step = 'done', finished_at = now() WHERE resize_id = $1;


-- ---------------------------------------------------------------------------------------------
-- Named calendars (api/handlers_calendars.py, api/calendars.py, scheduler/commands.py)

-- name: insert_calendar
-- A tenant's new calendar; nothing when the name is taken.
INSERT INTO kjs_calendars (user_id, name, exclude) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING user_id, name, exclude, created_at;

-- name: list_calendars
-- A tenant's calendars, by name.
SELECT user_id, name, exclude, created_at FROM kjs_calendars WHERE user_id = $1 ORDER BY name;

-- name: get_calendar
-- One calendar of a tenant.
SELECT user_id, name, exclude, created_at FROM kjs_calendars WHERE user_id = $1 AND name = $2;

-- name: delete_calendar
-- Delete a tenant's calendar; the jobs that named it keep the copy of its rules they hold.
DELETE FROM kjs_calendars WHERE user_id = $1 AND name = $2 RETURNING name;

-- name: calendars_by_name
-- The rules of those of the tenant's calendars named in $2.
SELECT name, exclude FROM kjs_calendars WHERE user_id = $1 AND name = ANY($2::text[]);
