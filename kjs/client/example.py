"""A job from start to finish with ``kjs.client``: ``python -m kjs.client.example [URL]``.

Creates a one-off job for the tenant of ``KJS_API_KEY`` (no user_id: the API takes the key's)
that calls ``URL`` (default https://example.com/) two seconds from now, waits until it ran,
and prints its runs. Exits 0 when the job succeeded.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta

from core.clock import utcnow
from kjs.client import Client, ClientError, NotFound
from schemas.v1.statuses import FINISHED_JOB_STATUSES

DEFAULT_URL = "https://example.com/"


async def main(url: str = DEFAULT_URL, timeout_s: float = 60.0) -> int:
    async with Client() as kjs:
        at = utcnow() + timedelta(seconds=2)
        accepted = await kjs.create(
            {
                "name": "client-example",
                "schedule": {"type": "once", "at": at.isoformat()},
                "target": {"type": "http", "method": "GET", "url": url},
            }
        )
        print(f"created job {accepted.job_id}, due at {at:%H:%M:%S} UTC")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                job = await kjs.get(accepted.job_id)
                if job.status in FINISHED_JOB_STATUSES:
                    break
            except NotFound:
                pass  # created asynchronously: stored a moment after the 202
            if time.monotonic() > deadline:
                print(f"the job did not finish within {timeout_s:g}s", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
        print(f"job {job.job_id} ({job.user_id}) {job.status} after {job.run_count} run(s)")
        async for run in kjs.iter_runs(job.job_id):
            took = (
                f"{(run.finished_at - run.started_at).total_seconds():.3f}s"
                if run.started_at and run.finished_at
                else "-"
            )
            print(
                f"  {run.execution_id}  attempt {run.attempt}  {run.status}  "
                f"http {run.http_status}  took {took}  {run.error or ''}".rstrip()
            )
        return 0 if job.status == "succeeded" else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL)))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
