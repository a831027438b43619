-- 0013: `kjs shards resize` (scheduler/resize.py). Each shard row says which partition count
-- its current epoch routes tenants by (NULL: the configured KJS_COMMAND_PARTITIONS), so a
-- scheduler learns the count when it claims the shard. A resize is one row of kjs_resizes;
-- at most one is unfinished, and its step is where a re-run after a crash goes on.
ALTER TABLE kjs_shards ADD COLUMN partitions integer CHECK (partitions >= 1);

CREATE TABLE kjs_resizes (
    resize_id        bigserial PRIMARY KEY,
    from_partitions  integer NOT NULL CHECK (from_partitions >= 1),
    to_partitions    integer NOT NULL,
    step             text NOT NULL CHECK (step IN ('started', 'grown', 'moved', 'done')),
    jobs_moved       integer,
    executions_moved integer,
    started_at       timestamptz NOT NULL DEFAULT now(),
    moved_at         timestamptz,
    finished_at      timestamptz,
    CONSTRAINT kjs_resizes_grows CHECK (to_partitions > from_partitions),
    CONSTRAINT kjs_resizes_finished CHECK ((step = 'done') = (finished_at IS NOT NULL))
);

-- One resize at a time: a second unfinished row is refused.
CREATE UNIQUE INDEX kjs_resizes_one_unfinished ON kjs_resizes ((true)) WHERE finished_at IS NULL;
