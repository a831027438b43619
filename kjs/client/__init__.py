"""A Python client of the kjs HTTP API (contract v1).

Requests and answers are the API's own models (``api.models``, ``schemas.v1``), so what a
method returns is exactly what the API documents::

    import asyncio

    from kjs.client import Client, NotFound

    async def main() -> None:
        # KJS_API_URL (default http://127.0.0.1:8080) and KJS_API_KEY, unless given here.
        async with Client() as kjs:
            accepted = await kjs.create(
                {
                    "name": "hourly-report",
                    "schedule": {"type": "cron", "expression": "0 * * * *",
                                 "timezone": "Europe/Berlin"},
                    "target": {"type": "http", "method": "POST",
                               "url": "https://reports.example.com/run"},
                }
            )
            job = await kjs.wait_stored(accepted.job_id)  # stored by its shard
            print(job.status, job.next_run_at)
            async for run in kjs.iter_runs(job.job_id):
                print(run.status, run.http_status)
            try:
                await kjs.get("00000000-0000-0000-0000-000000000000")
            except NotFound as exc:
                print(exc)  # 404 Not Found: job not found

    asyncio.run(main())

A job without a ``user_id`` belongs to the tenant of the API key. ``python -m
kjs.client.example`` runs a complete example. Refusals raise an :class:`ApiError` subclass
(:class:`InvalidRequest` with ``errors``, :class:`Unauthorized`, :class:`Forbidden`,
:class:`NotFound`, :class:`Conflict` with ``job_status``, :class:`PayloadTooLarge`,
:class:`TooManyRequests` and :class:`Unavailable` with ``retry_after``); no answer at all
raises :class:`ApiUnreachable`. Producers that already hold a Kafka client can submit without
the API: ``kjs.client.kafka.submit_via_kafka``.
"""

from kjs.client.errors import (
    ApiError,
    ApiUnreachable,
    ClientError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
)
from kjs.client.http import Client

__all__ = [
    "ApiError",
    "ApiUnreachable",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
]
