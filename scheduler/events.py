"""The shard's event relay: publishes the shard's outbox (``kjs_event_outbox``) to
``jobs.events``, fenced and batched (docs/events.md).

Only started with ``KJS_EVENTS=on``; off, a shard runs no relay at all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

import asyncpg

from core.queries import QUERIES
from scheduler.kafka_io import Sender
from scheduler.outages import until_available
from scheduler.store.shards import Fenced, fenced

log = logging.getLogger(__name__)

# Events published per transaction (one produce flush, one delete).
RELAY_BATCH = 1000
# How long the relay rests once the outbox is drained. The workers' 'started' events are
# written by their claims, which the shard hears nothing of, so the relay looks for new rows
# at this pace rather than being woken.
RELAY_INTERVAL_S = 0.2
# A batch's acks must come within this: the batch holds its fence (and a new owner's claim
# waits on it), so a broker that does not answer must not hold the shard for ever.
PUBLISH_TIMEOUT_S = 15.0


async def relay_once(
    pool: asyncpg.Pool, sender: Sender, topic: str, shard: int, epoch: int, batch: int
) -> int:
    """Publish the oldest ``batch`` events of the shard's outbox; returns how many.

    1. Fence: the transaction holds the shard's row FOR SHARE from the start, so a new
       owner's epoch bump waits until this batch is done, and a fenced-out relay publishes
       nothing: only the current owner publishes its shard's rows.
    2. Read the batch, oldest first (``seq``).
    3. Produce every event (key = job_id) and wait for all the acks: one flush a batch.
    4. Delete the batch in one statement and commit.
    A crash between 3 and 4 leaves the rows in: the next owner publishes them again, with
    the same ``event_id`` (fixed when the row was written), so a duplicate is an exact
    redelivery.
    """
    async with fenced(pool, shard, epoch) as conn:
        rows = await conn.fetch(QUERIES["outbox_batch"], shard, batch)
        if not rows:
            return 0
        acks = [
            await sender.send(topic, str(row["job_id"]).encode(), row["payload"].encode())
            for row in rows
        ]
        await asyncio.wait_for(asyncio.gather(*acks), PUBLISH_TIMEOUT_S)
        await conn.execute(QUERIES["delete_published_events"], [row["seq"] for row in rows])
    return len(rows)


@dataclass
class EventRelay:
    """Runs one relay per owned shard (``Shards`` starts and cancels them with the timers)."""

    pool: asyncpg.Pool
    sender: Sender
    topic: str
    batch: int = RELAY_BATCH
    interval_s: float = RELAY_INTERVAL_S

    async def run(self, shard: int, epoch: int) -> None:
        """Publish the shard's events until cancelled or fenced out; a full batch is
        followed at once by the next, a partial one by a rest of ``interval_s``."""
        step = partial(relay_once, self.pool, self.sender, self.topic, shard, epoch, self.batch)
        while True:
            try:
                published = await until_available(step, f"events of shard {shard}")
            except Fenced as exc:
                log.warning("shard %s event relay stopped: %s", shard, exc)
                return
            except Exception:
                log.exception("shard %s event relay failed; retrying in 1s", shard)
                published = 0
                await asyncio.sleep(1.0)
            if published < self.batch:
                await asyncio.sleep(self.interval_s)
