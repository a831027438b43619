"""Consumer lag of kjs's groups and of any other group: the queue depth of every kjs stage.

The parts, each its own module:

- ``lag.read``: one sample from Kafka (committed offsets, log start and end, members,
  and the timestamp of the record each lagging partition waits on);
- ``lag.figures``: offset lag, time lag, rates and the autoscaling hint (pure);
- ``lag.status``: the Burrow-like status rules over a sliding window (pure);
- ``lag.monitor``: windows per partition, and the report of every group;
- ``lag.render``: ``kjs lag``'s table and JSON; ``lag.command``: ``kjs lag``;
- ``lag.exporter``: ``kjs lag --serve``, the figures as Prometheus gauges;
- ``lag.metrics``: every metric name kjs exports.

This module says which groups are kjs's and which topics each one consumes, so that a group
that never committed on its topics is still reported, with its lag counted from the log start.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.settings import KafkaSettings
from schemas.v1.statuses import LANES
from topics.catalog import Catalog, catalog


def kjs_group_topics(cat: Catalog) -> dict[str, list[str]]:
    """Each kjs consumer group and the topics it consumes."""
    groups = {cat.scheduler_group: [cat.commands.name, cat.results.name]}
    for lane in LANES:
        groups[cat.worker_group(lane)] = [cat.due[lane].name]
    return groups


def monitored_groups(
    kafka: KafkaSettings, named: Iterable[str] = (), include_kjs: bool = True
) -> dict[str, list[str]]:
    """kjs's groups (unless ``include_kjs`` is false) and ``named`` ones, with known topics.

    A named group that is kjs's keeps its catalog topics; any other has none known, and is
    read on the topics it has committed offsets on and those assigned to its members.
    """
    kjs = kjs_group_topics(catalog(kafka))
    groups = dict(kjs) if include_kjs else {}
    for name in named:
        groups.setdefault(name, kjs.get(name, []))
    return groups
