"""``kjs lag``'s output: a table for people, JSON for programs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from lag.monitor import LagReport


def as_json(report: LagReport) -> dict[str, Any]:
    """The report as plain JSON types; statuses are strings, missing figures null."""
    return {
        "at": datetime.fromtimestamp(report.at, UTC).isoformat(),
        "samples": report.samples,
        "thresholds": asdict(report.thresholds),
        "drain_target_s": report.drain_target_s,
        "groups": [
            {
                **{k: v for k, v in asdict(g).items() if k != "partitions"},
                "status": str(g.status),
                "partitions": [{**asdict(p), "status": str(p.status)} for p in g.partitions],
            }
            for g in report.groups
        ],
    }


def table(report: LagReport, interval_s: float | None = None) -> str:
    """One row per partition, then one per group, then the thresholds the statuses used."""
    parts = [
        [
            p.group,
            p.topic,
            str(p.partition),
            _num(p.committed),
            _num(p.end),
            _num(p.lag),
            duration(p.time_lag_s),
            str(p.status),
            p.reason,
        ]
        for g in report.groups
        for p in g.partitions
    ]
    groups = [
        [
            g.group,
            g.state,
            _num(g.members),
            str(g.lag),
            duration(g.time_lag_s),
            _rate(g.consumed_per_s),
            _rate(g.produced_per_s),
            _num(g.workers_needed),
            str(g.status),
            g.reason,
        ]
        for g in report.groups
    ]
    head_p = ["GROUP", "TOPIC", "PART", "COMMITTED", "END", "LAG", "TIME-LAG", "STATUS", "REASON"]
    head_g = [
        "GROUP",
        "STATE",
        "MEMBERS",
        "LAG",
        "TIME-LAG",
        "CONSUMED/S",
        "PRODUCED/S",
        "WORKERS-NEEDED",
        "STATUS",
        "REASON",
    ]
    return "\n".join(
        [
            *_columns(head_p, parts, right={2, 3, 4, 5, 6}),
            "",
            *_columns(head_g, groups, right={2, 3, 4, 5, 6, 7}),
            "",
            footer(report, interval_s),
        ]
    )


def footer(report: LagReport, interval_s: float | None) -> str:
    th = report.thresholds
    apart = f", {interval_s:g}s apart" if interval_s is not None and report.samples > 1 else ""
    return (
        f"status over {report.samples} sample(s){apart} (window {th.window}); "
        f"STALL/WARN need {th.min_samples} samples with lag; "
        f"STOP after {th.stop_after_s:g}s with lag and no progress; "
        f"workers needed to drain within {report.drain_target_s:g}s"
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rate(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def _columns(head: list[str], rows: Sequence[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
