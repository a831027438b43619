"""Java's default partitioner, so that every client agrees on a key's partition.

librdkafka (confluent-kafka, kcat) defaults to CRC32; producers there must set
``partitioner=murmur2_random``. The scheduler re-routes records that arrive elsewhere.
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2

# Every confluent-kafka producer in kjs is built from this.
CONFLUENT_PRODUCER_DEFAULTS = {"partitioner": "murmur2_random"}


# aiokafka's murmur2 is pure Python (about 10 us a key); keys are user ids, few and repeated,
# and a worker computes one per result.
@functools.lru_cache(maxsize=65536)
def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
