"""Java's default partitioner, so that every client agrees on a key's partition.

librdkafka (confluent-kafka, kcat) defaults to CRC32; producers there must set
``partitioner=murmur2_random``. The scheduler re-routes records that arrive elsewhere.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

# Every confluent-kafka producer in kjs is built from this.
CONFLUENT_PRODUCER_DEFAULTS = {"partitioner": "murmur2_random"}


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
