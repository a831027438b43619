"""infra/monitoring/: the rules pass promtool, and every query uses a metric that exists.

"Exists" means exported by the lag exporter or registered by a kjs process: the processes'
metric modules are imported and their live registries read (``lag.metrics.registered``).
promtool comes from Debian's ``prometheus`` package (installed by infra/system-deps.sh).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.settings import KafkaSettings
from lag.exporter import DEFAULT_PORT
from lag.metrics import EXPORTER_METRICS, MetricName, known_series, registered
from schemas.v1.statuses import Lane
from topics.catalog import catalog


def process_metrics() -> list[MetricName]:
    """What the scheduler, the workers and the API register, from their real registries."""
    from prometheus_client import REGISTRY, CollectorRegistry

    import scheduler.metrics
    import topics.dlq
    import workers.metrics
    from api.metrics import ApiMetrics
    from core.ops_server import publish_build_info

    assert scheduler.metrics and workers.metrics and topics.dlq  # registered on import
    build = CollectorRegistry()
    publish_build_info("any", build)
    api = CollectorRegistry()
    ApiMetrics(api)
    return [
        *registered(REGISTRY, "scheduler, workers"),
        *registered(api, "api"),
        *registered(build, "every process"),
    ]


def all_series() -> frozenset[str]:
    return known_series([*EXPORTER_METRICS, *process_metrics()])


MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = MONITORING / "alerts.yml"

# PromQL words that look like metric names but are not.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"and", "or", "unless", "bool", "offset", "inf", "nan"}
)
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names and labels excluded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\$\{?\w+\}?", "5m", text)  # Grafana variables such as $__rate_interval
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = _GROUPING.sub("", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # an exponent such as 1e3
            continue
        if text[m.end() :].lstrip().startswith("(") or m.group() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def alert_exprs() -> Iterator[str]:
    """The ``expr:`` of every rule in alerts.yml, inline or as a ``|`` block."""
    lines = ALERTS.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m is None:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value != "|":
            yield value
            continue
        block = []
        for follow in lines[i + 1 :]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            block.append(follow.strip())
        yield " ".join(block)


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool is missing: apt-get install prometheus (see .ci/run)"
    return path


async def run_promtool(*args: str, cwd: Path = MONITORING) -> str:
    proc = await asyncio.create_subprocess_exec(
        promtool(),
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{text}"
    return text


def test_metric_names_extracts_selectors_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, lane) (rate(kjs_x_bucket{lane="a b"}[5m]))) '
        "/ on(group) group_left(topic) kjs_y > 1e3 and kjs_z offset 5m"
    )
    assert metric_names(expr) == {"kjs_x_bucket", "kjs_y", "kjs_z"}
    assert metric_names("rate(kjs_nope_total[$__rate_interval])") == {"kjs_nope_total"}


async def test_alert_rules_pass_promtool_check() -> None:
    out = await run_promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in out


async def test_alert_rules_unit_tests_pass() -> None:
    """alerts_test.yml feeds series to each alert and expects it to fire, or not."""
    await run_promtool("test", "rules", "alerts_test.yml")


async def test_scrape_config_passes_promtool_check() -> None:
    await run_promtool("check", "config", "prometheus.yml")


def test_scrape_config_covers_every_process() -> None:
    text = (MONITORING / "prometheus.yml").read_text()
    ports = {int(p) for p in re.findall(r'"[\w.\-]+:(\d+)"', text)}
    assert ports == {8080, 9464, 9465, 9466, 9467, DEFAULT_PORT}


def test_dashboard_parses_and_has_the_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"].lower() for p in doc["panels"])
    for needed in ("executions per second", "lateness", "lag per lane", "failed", "shards"):
        assert needed in titles
    assert len(list(dashboard_exprs())) >= 10


def test_dashboard_queries_use_metrics_that_exist() -> None:
    known = all_series()
    unknown = {
        (title, name)
        for title, expr in dashboard_exprs()
        for name in metric_names(expr)
        if name not in known
    }
    assert not unknown, f"panels query metrics nobody exports: {sorted(unknown)}"


def test_alerts_query_metrics_that_exist() -> None:
    exprs = list(alert_exprs())
    assert len(exprs) == 8
    unknown = {name for expr in exprs for name in metric_names(expr) if name not in all_series()}
    assert not unknown, f"alerts query metrics nobody exports: {sorted(unknown)}"


async def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query, as a recording rule, through promtool's parser."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "5m")
        rules += [f"      - record: dashboard:query{i}", f"        expr: {json.dumps(concrete)}"]
    (tmp_path / "dashboard-rules.yml").write_text("\n".join(rules) + "\n")
    await run_promtool("check", "rules", "dashboard-rules.yml", cwd=tmp_path)


def test_every_metric_name_is_declared_once() -> None:
    metrics = [*EXPORTER_METRICS, *process_metrics()]
    names = [m.name for m in metrics]
    assert len(names) == len(set(names))
    assert {"kjs_jobs_fired_total", "kjs_api_requests_total", "kjs_dead_letters_total"} <= set(
        names
    )
    for m in metrics:
        assert m.name.startswith("kjs_")
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert not {"job_id", "user_id", "execution_id"} & set(m.labels), m.name


def test_keda_object_names_the_lanes_group_and_topic() -> None:
    lane: Lane = "normal"
    text = (MONITORING / "keda-scaledobject.yaml").read_text()
    cat = catalog(KafkaSettings())
    assert re.search(rf"^\s+consumerGroup: {re.escape(cat.worker_group(lane))}$", text, re.M)
    assert re.search(rf"^\s+topic: {re.escape(cat.due[lane].name)}$", text, re.M)
    assert re.search(r"^\s+offsetResetPolicy: earliest$", text, re.M)
    (query,) = re.findall(r"^\s+query: (.+)$", text, re.M)
    assert metric_names(query) <= all_series()
    assert f'group="{cat.worker_group(lane)}"' in query
