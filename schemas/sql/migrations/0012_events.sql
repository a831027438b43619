-- 0012: the outbox of jobs.events (docs/events.md). The owner of a state change writes its
-- event here in the change's own transaction; the owning shard's relay publishes a batch of
-- its shard's rows and deletes them (fenced), in order of seq. Empty unless KJS_EVENTS=on.
CREATE TABLE kjs_event_outbox (
    seq        bigserial PRIMARY KEY,
    shard      integer NOT NULL CHECK (shard >= 0),
    job_id     uuid NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX kjs_event_outbox_by_shard ON kjs_event_outbox (shard, seq);
