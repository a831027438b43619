"""HTTP jobs at a target, at a sweep of rates: lateness, duplicates, CPU per 1,000 jobs.

    .venv/bin/python -m bench.capacity --rates 500,1000,2000 --seconds 30
    .venv/bin/python -m bench.capacity --rates 2000 --seconds 30 --processes 1,2

For every (worker processes, rate): a fresh database and topic namespace, one ``kjs
scheduler`` and one ``kjs worker --lane normal --processes N``, and nginx as the target (one
worker process; it answers 204 and logs ``$msec``, when its event loop took the request, in
milliseconds). Job ``i`` is ``GET /job?job_id=i&sched=<its time>``, created on
``jobs.commands`` well before its time, so submission is not measured. Lateness is nginx's
arrival time minus the job's time. Printed per run:

* p50 / p99 / max lateness, jobs missing, jobs that reached the target more than once;
* CPU-seconds per 1,000 jobs of each process (scheduler, workers, broker, Postgres, nginx)
  and their sum, from ``/proc`` between the first job's time and the last start;
* at the end, the capacity: the highest rate whose p99 stayed under 1 s with no job run
  twice and none missing.

Needs nginx (``apt-get install nginx``); the services come from ``infra`` like the tests'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.databases import fresh_database
from core.settings import InfraSettings, KafkaSettings
from infra.supervisor import status, up
from topics.admin import create_topics
from topics.catalog import catalog

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    log_format bench '$arg_job_id $arg_sched $msec';
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location = /job {{
            access_log {dir}/starts.txt bench buffer=256k flush=100ms;
            return 204;
        }}
    }}
}}
"""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def service_pid(line: str) -> int:
    """The pid in infra's status line ``running pid 123 on ...``."""
    words = line.split()
    return int(words[words.index("pid") + 1])


async def postmaster_of(dsn: str) -> int:
    """The postmaster of the Postgres ``dsn`` points to (the dev one, or a private one that
    ``KJS_DATABASE_URL`` names, e.g. with pg_stat_statements loaded for a measurement): the
    parent of the backend serving a connection."""
    conn = await asyncpg.connect(dsn)
    try:
        return parent_of(conn.get_server_pid())  # while the backend is there
    finally:
        await conn.close()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Run:
    processes: int
    rate: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    twice: int
    cpu: dict[str, float]
    # p99 lateness of each SLICE_S of the schedule, in order: where in the run a tail came.
    p99_by_slice_ms: list[float]

    @property
    def within_capacity(self) -> bool:
        return self.p99_ms < 1000 and self.missing == 0 and self.twice == 0


async def one_run(args: argparse.Namespace, processes: int, rate: int) -> Run:
    infra = InfraSettings()
    await up(infra)
    services = await status(infra)
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(namespace=f"cap{run}.")
    await create_topics(kafka, catalog(kafka))
    dsn = await fresh_database("capacity")
    work = Path(tempfile.mkdtemp(prefix="kjs-capacity-"))
    (work / "body").mkdir()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=args.port))
    nginx = await asyncio.create_subprocess_exec(
        args.nginx, "-c", str(work / "nginx.conf"), "-p", str(work)
    )
    env = {
        **os.environ,
        "KJS_NAMESPACE": kafka.namespace,
        "KJS_DATABASE_URL": dsn,
        "KJS_HTTP_ALLOWLIST": json.dumps(["127.0.0.1"]),
    }
    kjs = [sys.executable, "-m", "kjs.cli", "--loglevel", "warning"]
    scheduler = await asyncio.create_subprocess_exec(*kjs, "scheduler", env=env)
    worker = await asyncio.create_subprocess_exec(
        *kjs, "worker", "--lane", "normal", "--processes", str(processes), env=env
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, linger_ms=5)
    await producer.start()
    n = int(rate * args.seconds)
    try:
        start = time.time() + args.lead_in
        topic = catalog(kafka).commands.name
        acks = []
        for i in range(n):
            at = start + i / rate
            user = f"cap-{i % 64}"
            job = {
                "type": "create",
                "job": {
                    "user_id": user,
                    "name": "capacity",
                    "schedule": {"type": "once", "at": _iso(at)},
                    "target": {
                        "type": "http",
                        "method": "GET",
                        "url": f"http://127.0.0.1:{args.port}/job?job_id={i}&sched={at:.6f}",
                    },
                },
            }
            acks.append(await producer.send(topic, json.dumps(job).encode(), key=user.encode()))
        await asyncio.gather(*acks)
        workers = [worker.pid] if processes == 1 else children_of(worker.pid)
        pids = {
            "scheduler": [scheduler.pid],
            "workers": workers,
            "broker": [service_pid(services["kafka"])],
            "postgres": [pg := await postmaster_of(dsn), *children_of(pg)],
            "nginx": [nginx.pid, *children_of(nginx.pid)],
        }
        await asyncio.sleep(max(0.0, start - time.time()))
        before = {name: sum(cpu_s(p) for p in ps) for name, ps in pids.items()}
        starts = await wait_for_starts(work / "starts.txt", n, start + args.seconds + 120)
        # Postgres starts a backend per connection: count the ones that came meanwhile too.
        pids["postgres"] = [pg, *children_of(pg)]
        after = {name: sum(cpu_s(p) for p in ps) for name, ps in pids.items()}
    finally:
        await producer.stop()
        for proc in (worker, scheduler):
            proc.send_signal(signal.SIGTERM)
        for proc in (worker, scheduler):
            await proc.wait()
        nginx.send_signal(signal.SIGQUIT)
        await nginx.wait()
    seen = Counter(job for job, _ in starts)
    if not seen:
        raise SystemExit("no job reached the target: see the scheduler's dead letters above")
    first = _first(starts)
    late_ms = [(arrived - sched) * 1000 for sched, arrived in first.values()]
    cpu = {name: 1000 * max(0.0, after[name] - before[name]) / n for name in before}
    shutil.rmtree(work, ignore_errors=True)
    return Run(
        processes,
        rate,
        percentile(late_ms, 0.5),
        percentile(late_ms, 0.99),
        max(late_ms),
        missing=n - len(seen),
        twice=sum(1 for c in seen.values() if c > 1),
        cpu=cpu,
        p99_by_slice_ms=_p99_by_slice(list(first.values()), start),
    )


SLICE_S = 10


def _p99_by_slice(times: list[tuple[float, float]], start: float) -> list[float]:
    """p99 lateness (ms) of the jobs scheduled in each ``SLICE_S`` from ``start``."""
    slices: dict[int, list[float]] = {}
    for sched, arrived in times:
        slices.setdefault(int((sched - start) // SLICE_S), []).append((arrived - sched) * 1000)
    return [percentile(slices[k], 0.99) for k in sorted(slices)]


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"


def _first(starts: list[tuple[int, tuple[float, float]]]) -> dict[int, tuple[float, float]]:
    first: dict[int, tuple[float, float]] = {}
    for job, times in starts:
        if job not in first or times[1] < first[job][1]:
            first[job] = times
    return first


async def wait_for_starts(
    log: Path, n: int, deadline: float
) -> list[tuple[int, tuple[float, float]]]:
    """Every request nginx logged, once n distinct jobs arrived (or at the deadline), plus
    two seconds for late duplicates."""
    settle_until = None
    while True:
        starts = await asyncio.to_thread(read_starts, log)
        if settle_until is None and (len({j for j, _ in starts}) >= n or time.time() > deadline):
            settle_until = time.time() + 2
        if settle_until is not None and time.time() >= settle_until:
            return starts
        await asyncio.sleep(0.25)


def read_starts(log: Path) -> list[tuple[int, tuple[float, float]]]:
    if not log.exists():
        return []
    starts = []
    for line in log.read_text().splitlines():
        job, sched, arrived = line.split()
        starts.append((int(job), (float(sched), float(arrived))))
    return starts


def report(run: Run) -> str:
    cpu = "  ".join(f"{name} {v:.2f}" for name, v in run.cpu.items())
    return (
        f"workers={run.processes} rate={run.rate}/s: p50 {run.p50_ms:.1f} ms, "
        f"p99 {run.p99_ms:.1f} ms, max {run.max_ms:.0f} ms, missing {run.missing}, "
        f"run twice {run.twice}\n    CPU-s per 1,000 jobs: {cpu}  sum {sum(run.cpu.values()):.2f}"
        f"\n    p99 per {SLICE_S} s of the run (ms): "
        + ", ".join(f"{v:.0f}" for v in run.p99_by_slice_ms)
    )


async def main(args: argparse.Namespace) -> None:
    runs = []
    for processes in args.processes:
        for rate in args.rates:
            run = await one_run(args, processes, rate)
            print(report(run), flush=True)
            runs.append(run)
    for processes in args.processes:
        ok = [r.rate for r in runs if r.processes == processes and r.within_capacity]
        best = f"{max(ok)} jobs/s" if ok else f"below {min(args.rates)} jobs/s"
        print(f"capacity with {processes} worker process(es): {best} (p99 < 1 s, each job once)")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rates", type=_ints, default=[500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--processes", type=_ints, default=[1], help="worker processes to try")
    parser.add_argument("--lead-in", type=float, default=25, help="seconds before the first job")
    parser.add_argument("--port", type=int, default=18299)
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    asyncio.run(main(parser.parse_args()))
