"""An async client of the kjs HTTP API (contract v1), typed with the API's own models."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from api.handlers_backfill import BackfillAccepted
from api.handlers_schedules import PreviewResponse
from api.models import (
    CancelAccepted,
    ExecutionDetail,
    ExecutionPage,
    ExecutionView,
    JobPage,
    JobView,
    LifecycleAccepted,
    SubmitAccepted,
)
from core.clock import utcnow
from core.settings import ClientSettings, load
from kjs.client.errors import ApiUnreachable, NotFound, UnexpectedResponse, api_error
from schemas.v1.commands import JobChanges
from schemas.v1.jobs import JobSubmission
from schemas.v1.schedules import CronSchedule, IntervalSchedule, OnceSchedule
from schemas.v1.statuses import ShownJobStatus

M = TypeVar("M", bound=BaseModel)

# A job's or an execution's id: a UUID, or its text.
Id = UUID | str
AnySchedule = OnceSchedule | CronSchedule | IntervalSchedule

DEFAULT_TIMEOUT_S = 30.0


def _id(value: Id, what: str) -> str:
    """The id as it goes into a path; anything but a UUID is refused before it is sent."""
    if isinstance(value, UUID):
        return str(value)
    try:
        return str(UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"not {what} id: {value!r}") from None


def api_url(url: str) -> str:
    """``url`` without a trailing slash, or ValueError when it is not an http(s) URL."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an http(s) URL: {url!r}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url.rstrip("/")


def job_body(spec: JobSubmission | Mapping[str, Any]) -> dict[str, Any]:
    """The body of a create: a mapping as it is, a ``JobSubmission`` (or ``JobSpec``) as JSON.
    A user_id is sent only when there is one; without it the API takes the credential's."""
    if not isinstance(spec, JobSubmission):
        return dict(spec)
    body = spec.model_dump(mode="json")
    if body.get("user_id") is None:
        body.pop("user_id", None)
    return body


def changes_body(changes: JobChanges | Mapping[str, Any]) -> dict[str, Any]:
    """The body of an update: only the parts that change."""
    if not isinstance(changes, JobChanges):
        return dict(changes)
    return {k: v for k, v in changes.model_dump(mode="json").items() if v is not None}


class Client:
    """The kjs API for one credential.

    ``url`` and ``key`` default to ``KJS_API_URL`` and ``KJS_API_KEY``. Use it as
    ``async with Client() as client:``, or call :meth:`close` when done. Every method raises
    an :class:`~kjs.client.errors.ApiError` subclass when the API refuses, and
    :class:`~kjs.client.errors.ApiUnreachable` when it does not answer.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if url is None or key is None:
            settings = load(ClientSettings)
            if url is None:
                url = settings.api_url
            if key is None and settings.api_key is not None:
                key = settings.api_key.get_secret_value()
        self.url = api_url(url)
        self._key = key or None
        self._timeout_s = timeout_s
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, key={'set' if self._key else 'unset'})"

    @property
    def has_key(self) -> bool:
        """Whether requests carry an API key (the key itself is never shown)."""
        return self._key is not None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    # -- jobs ------------------------------------------------------------------------------

    async def create(self, spec: JobSubmission | Mapping[str, Any]) -> SubmitAccepted:
        """Submit a job (``POST /v1/jobs``); accepted once Kafka has the create command.

        ``spec`` is a ``JobSubmission`` or ``JobSpec``, or a mapping sent as given. Without a
        ``user_id`` the job is the API key's tenant's.
        """
        return await self._call(SubmitAccepted, "POST", "/v1/jobs", body=job_body(spec))

    async def list_jobs(
        self,
        user_id: str | None = None,
        status: ShownJobStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of a tenant's jobs, newest first; ``next_cursor`` continues it."""
        params = {"user_id": user_id, "status": status, "limit": limit, "cursor": cursor}
        return await self._call(JobPage, "GET", "/v1/jobs", params=params)

    async def iter_jobs(
        self,
        user_id: str | None = None,
        status: ShownJobStatus | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[JobView]:
        """Every job of the tenant, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs(user_id, status, page_size, cursor)
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get(self, job_id: Id) -> JobView:
        """A job's status, next run, last execution and spec."""
        return await self._call(JobView, "GET", f"/v1/jobs/{_id(job_id, 'a job')}")

    async def wait_stored(
        self, job_id: Id, timeout_s: float = 10.0, interval_s: float = 0.05
    ) -> JobView | None:
        """The job once its shard has stored it, or None after ``timeout_s``.

        A create is accepted when Kafka has the command; the owning shard applies it a moment
        later, and until then the job reads as 404. This waits out that moment.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await self.get(job_id)
            except NotFound:
                if time.monotonic() >= deadline:
                    return None
            await asyncio.sleep(interval_s)

    async def runs(
        self, job_id: Id, limit: int | None = None, cursor: str | None = None
    ) -> ExecutionPage:
        """One page of a job's executions (attempts), newest first."""
        path = f"/v1/jobs/{_id(job_id, 'a job')}/executions"
        return await self._call(
            ExecutionPage, "GET", path, params={"limit": limit, "cursor": cursor}
        )

    async def iter_runs(
        self, job_id: Id, page_size: int | None = None
    ) -> AsyncIterator[ExecutionView]:
        """Every execution of a job, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.runs(job_id, page_size, cursor)
            for execution in page.executions:
                yield execution
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def execution(self, execution_id: Id) -> ExecutionDetail:
        """One execution with everything stored about it: times, worker, error, output."""
        path = f"/v1/executions/{_id(execution_id, 'an execution')}"
        return await self._call(ExecutionDetail, "GET", path)

    async def cancel(self, job_id: Id) -> CancelAccepted:
        return await self._call(CancelAccepted, "DELETE", f"/v1/jobs/{_id(job_id, 'a job')}")

    async def pause(self, job_id: Id) -> LifecycleAccepted:
        return await self._lifecycle(job_id, "pause")

    async def resume(self, job_id: Id) -> LifecycleAccepted:
        return await self._lifecycle(job_id, "resume")

    async def trigger(self, job_id: Id) -> LifecycleAccepted:
        """Run the job once more, now, without moving its schedule."""
        return await self._lifecycle(job_id, "trigger")

    async def backfill(
        self,
        job_id: Id,
        from_: datetime,
        to: datetime,
        overlap: str | None = None,
    ) -> BackfillAccepted:
        """Run the job's occurrences in ``[from_, to)``, in order, each once (at most 1,000)."""
        body: dict[str, Any] = {"from": from_.isoformat(), "to": to.isoformat()}
        if overlap is not None:
            body["overlap"] = overlap
        path = f"/v1/jobs/{_id(job_id, 'a job')}/backfill"
        return await self._call(BackfillAccepted, "POST", path, body=body)

    async def update(
        self, job_id: Id, changes: JobChanges | Mapping[str, Any]
    ) -> LifecycleAccepted:
        """Replace a job's name, schedule, target, priority or retry policy."""
        path = f"/v1/jobs/{_id(job_id, 'a job')}"
        return await self._call(LifecycleAccepted, "PATCH", path, body=changes_body(changes))

    async def preview(
        self,
        schedule: AnySchedule | Mapping[str, Any],
        count: int = 10,
        from_: datetime | None = None,
    ) -> PreviewResponse:
        """The next ``count`` fire times of ``schedule`` for a job created at ``from_`` (now)."""
        body = {
            "schedule": (
                schedule.model_dump(mode="json")
                if isinstance(schedule, BaseModel)
                else dict(schedule)
            ),
            "from": (from_ or utcnow()).isoformat(),
            "count": count,
        }
        return await self._call(PreviewResponse, "POST", "/v1/schedules/preview", body=body)

    # -- plumbing --------------------------------------------------------------------------

    async def _lifecycle(self, job_id: Id, action: str) -> LifecycleAccepted:
        path = f"/v1/jobs/{_id(job_id, 'a job')}/{action}"
        return await self._call(LifecycleAccepted, "POST", path)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    def _headers(self, with_body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kjs-client"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        if with_body:
            headers["Content-Type"] = "application/json"
        return headers

    async def _call(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int | None] | None = None,
    ) -> M:
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self._open().request(
                method,
                self.url + path,
                params=query,
                headers=self._headers(body is not None),
                data=None if body is None else json.dumps(body),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            ) as resp:
                raw = await resp.read()
                status, headers = resp.status, dict(resp.headers)
        except TimeoutError:
            raise ApiUnreachable(self.url, f"no answer within {self._timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or str(exc.os_error) or str(exc)
            raise ApiUnreachable(self.url, reason) from None
        except aiohttp.ClientError as exc:
            raise ApiUnreachable(self.url, str(exc) or type(exc).__name__) from None
        if not 200 <= status < 300:
            raise api_error(status, raw, headers)
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            where = ".".join(map(str, errors[0]["loc"])) if errors else ""
            detail = f"{where}: {errors[0]['msg']}" if errors else str(exc)
            raise UnexpectedResponse(status, f"not a {model.__name__} ({detail})") from None
