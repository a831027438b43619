"""Garbage-collector settings for kjs's long-running processes.

Measured in a 10,000-job burst (py-spy ``--native`` on the worker): 44% of the worker's time
was CPython's cyclic collector (``gc_collect_main``). A worker holds every due event of its
lead in memory (records, events, tasks, futures: over a million objects in a burst), and with
the default thresholds (700, 10, 10) the collector walks them again and again while the heap
grows, each full pass a stop of the event loop. Nearly none of those objects is garbage: they
are freed by reference counting when their job is done.

So each process:

1. Freezes what start-up allocated (modules, classes, pydantic's validators): the collector
   never walks it again (``gc.freeze``).
2. Collects the young generation every ``YOUNG`` allocations instead of 700, and the older
   generations proportionally less often. Cycles (exceptions with their tracebacks, some
   asyncio internals) are still collected, a little later; memory stays bounded by what
   the process holds, not by the thresholds.
"""

from __future__ import annotations

import gc

YOUNG = 50_000
MIDDLE = 20
OLD = 20


def tune_collector() -> None:
    """Apply the settings above; call once start-up imports are done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
