"""A small client for agent platforms: report episodes to an auto-dev service in three lines.

::

    from auto_dev.client import AutoDevClient
    autodev = AutoDevClient("http://auto-dev:8080", token="adt_...")
    autodev.record_episode(agent="a1", task="slugify the title", success=False,
                           tool_name="slugify", inputs={"args": ["A B"]}, error_trace=tb)
    autodev.record_signal(kind="business_value", value=12.5, workflow="refund_request")

:class:`AsyncAutoDevClient` is the same for asyncio. Both retry what is safe to retry: a
connection that failed before the request was sent, and (for reads and for the ingest POSTs,
which carry an ``Idempotency-Key`` generated once per call and reused on every attempt) a
timeout, a dropped connection, 429 and 5xx answers; with exponential backoff and jitter, a
``Retry-After`` answer wins. A request the service refused is raised as auto-dev's own error:
422 as :class:`~auto_dev.ValidationError` (its ``field`` is the service's), 404 as
:class:`~auto_dev.NotFoundError`, anything else as :class:`ServiceError`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from auto_dev._exceptions import AutoDevError, NotFoundError, ValidationError

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_INGEST_PATHS = ("/v1/episodes", "/v1/skill-executions", "/v1/signals")


class ServiceError(AutoDevError):
    """The service answered an error (or could not be reached after every retry).
    ``status`` is the HTTP status (0: no answer); ``problem`` the RFC 7807 body, if any."""

    def __init__(self, message: str, *, status: int = 0,
                 problem: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.problem = dict(problem or {})
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` in all; waits of ``backoff_s * 2**n`` (at most ``max_backoff_s``) with full
    jitter between them."""

    attempts: int = 5
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0

    def wait(self, attempt: int, response: httpx.Response | None) -> float:
        after = _retry_after(response)
        if after is not None:
            return min(after, self.max_backoff_s)
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** attempt))


class _Requests:
    """What the sync and async clients share: building requests, reading answers."""

    def __init__(self, base_url: str, token: str, retry: RetryPolicy | None) -> None:
        if not isinstance(token, str) or not token.strip():
            raise ValidationError("token", "must be a token from `auto-dev tokens create`")
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token.strip()}",
                        "User-Agent": "auto-dev-client"}
        self.retry = retry or RetryPolicy()

    @staticmethod
    def headers_for(method: str, path: str, idempotency_key: str | None) -> dict[str, str]:
        if method == "POST" and (idempotency_key is not None or path in _INGEST_PATHS):
            return {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return {}

    @staticmethod
    def retryable(method: str, headers: Mapping[str, str]) -> bool:
        """Whether an attempt that may have reached the service can be repeated."""
        return method in ("GET", "HEAD", "PUT", "DELETE") or "Idempotency-Key" in headers

    @staticmethod
    def should_retry(response: httpx.Response) -> bool:
        return response.status_code in _RETRY_STATUSES

    @staticmethod
    def result(response: httpx.Response) -> Any:
        if response.status_code < 400:
            return response.json() if response.content else None
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        detail = str(problem.get("detail") or response.text[:200] or response.reason_phrase)
        if response.status_code == 422:
            raise ValidationError(str(problem.get("field") or "body"), detail)
        if response.status_code == 404:
            raise NotFoundError(detail)
        raise ServiceError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {detail}",
                           status=response.status_code, problem=problem)


class AutoDevClient:
    """A synchronous client of one auto-dev service, acting with one token (its tenant)."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0,
                 retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._requests = _Requests(base_url, token, retry)
        self._http = httpx.Client(base_url=self._requests.base_url,
                                  headers=self._requests.headers, timeout=timeout_s,
                                  transport=transport)

    # -- ingest ---------------------------------------------------------------------------------

    def record_episode(self, **episode: Any) -> str:
        """Report one episode (the keyword arguments of ``AutoDev.record_episode``); returns
        its id."""
        return str(self.request("POST", "/v1/episodes", json=episode)["episode_id"])

    def record_episodes(self, episodes: Iterable[Mapping[str, Any]]) -> list[str]:
        """Report a batch of episodes, recorded all or nothing; returns their ids."""
        return list(self.request("POST", "/v1/episodes", json=list(episodes))["episode_ids"])

    def record_skill_execution(self, **execution: Any) -> None:
        """Report one skill execution (the keyword arguments of
        ``AutoDev.record_skill_execution``)."""
        self.request("POST", "/v1/skill-executions", json=execution)

    def record_signal(self, **signal: Any) -> str:
        """Report a signal on a tool or workflow version (the keyword arguments of
        ``AutoDev.record_signal``: ``kind``, ``value``, ``tool`` or ``workflow``, and
        optionally ``version``, ``agent``, ``metadata``); returns its id."""
        return str(self.request("POST", "/v1/signals", json=signal)["signal_id"])

    def record_signals(self, signals: Iterable[Mapping[str, Any]]) -> list[str]:
        """Report a batch of signals, recorded all or nothing; returns their ids."""
        return list(self.request("POST", "/v1/signals", json=list(signals))["signal_ids"])

    # -- review ---------------------------------------------------------------------------------

    def candidates(self, **filters: Any) -> dict[str, Any]:
        """A page of candidates (``status``, ``kind``, ``target``, ``limit``, ``offset``)."""
        return dict(self.request("GET", "/v1/candidates", params=filters))

    def decide(self, candidate_id: str, decision: str, reason: str = "") -> dict[str, Any]:
        """``approve``, ``reject`` or ``promote`` a candidate, in the token's name."""
        if decision not in ("approve", "reject", "promote"):
            raise ValidationError("decision", "must be approve, reject or promote")
        return dict(self.request("POST", f"/v1/candidates/{candidate_id}/{decision}",
                                 json={"reason": reason}))

    def workflows(self, **paging: Any) -> dict[str, Any]:
        """A page of the tenant's workflows (``limit``, ``offset``)."""
        return dict(self.request("GET", "/v1/workflows", params=paging))

    def workflow(self, name: str) -> dict[str, Any]:
        """Workflow ``name``: its counts, active version and that version's definition."""
        return dict(self.request("GET", _workflow_path(name)))

    def workflow_signals(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Per kind of signal: count, mean, min, max of the active version (or ``version``)."""
        params = {} if version is None else {"version": version}
        return dict(self.request("GET", _workflow_path(name) + "/signals", params=params))

    # -- plumbing -------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None,
                idempotency_key: str | None = None) -> Any:
        """Send one request with retries; the answer's JSON, or the error it stands for."""
        method = method.upper()
        headers = _Requests.headers_for(method, path, idempotency_key)
        policy = self._requests.retry
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            try:
                response = self._http.request(method, path, json=json, params=params,
                                              headers=headers)
            except httpx.TransportError as exc:
                if last or not _may_repeat(exc, method, headers):
                    raise ServiceError(f"{method} {path}: {exc!r}") from exc
                time.sleep(policy.wait(attempt, None))
                continue
            if _Requests.should_retry(response) and not last \
                    and _Requests.retryable(method, headers):
                time.sleep(policy.wait(attempt, response))
                continue
            return _Requests.result(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AutoDevClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncAutoDevClient:
    """:class:`AutoDevClient` for asyncio."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0,
                 retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._requests = _Requests(base_url, token, retry)
        self._http = httpx.AsyncClient(base_url=self._requests.base_url,
                                       headers=self._requests.headers, timeout=timeout_s,
                                       transport=transport)

    async def record_episode(self, **episode: Any) -> str:
        return str((await self.request("POST", "/v1/episodes", json=episode))["episode_id"])

    async def record_episodes(self, episodes: Iterable[Mapping[str, Any]]) -> list[str]:
        answer = await self.request("POST", "/v1/episodes", json=list(episodes))
        return list(answer["episode_ids"])

    async def record_skill_execution(self, **execution: Any) -> None:
        await self.request("POST", "/v1/skill-executions", json=execution)

    async def record_signal(self, **signal: Any) -> str:
        return str((await self.request("POST", "/v1/signals", json=signal))["signal_id"])

    async def record_signals(self, signals: Iterable[Mapping[str, Any]]) -> list[str]:
        answer = await self.request("POST", "/v1/signals", json=list(signals))
        return list(answer["signal_ids"])

    async def candidates(self, **filters: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/candidates", params=filters))

    async def decide(self, candidate_id: str, decision: str, reason: str = ""
                     ) -> dict[str, Any]:
        if decision not in ("approve", "reject", "promote"):
            raise ValidationError("decision", "must be approve, reject or promote")
        return dict(await self.request("POST", f"/v1/candidates/{candidate_id}/{decision}",
                                       json={"reason": reason}))

    async def workflows(self, **paging: Any) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/workflows", params=paging))

    async def workflow(self, name: str) -> dict[str, Any]:
        return dict(await self.request("GET", _workflow_path(name)))

    async def workflow_signals(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = {} if version is None else {"version": version}
        return dict(await self.request("GET", _workflow_path(name) + "/signals",
                                       params=params))

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: Mapping[str, Any] | None = None,
                      idempotency_key: str | None = None) -> Any:
        method = method.upper()
        headers = _Requests.headers_for(method, path, idempotency_key)
        policy = self._requests.retry
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            try:
                response = await self._http.request(method, path, json=json, params=params,
                                                     headers=headers)
            except httpx.TransportError as exc:
                if last or not _may_repeat(exc, method, headers):
                    raise ServiceError(f"{method} {path}: {exc!r}") from exc
                await asyncio.sleep(policy.wait(attempt, None))
                continue
            if _Requests.should_retry(response) and not last \
                    and _Requests.retryable(method, headers):
                await asyncio.sleep(policy.wait(attempt, response))
                continue
            return _Requests.result(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAutoDevClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _may_repeat(exc: httpx.TransportError, method: str, headers: Mapping[str, str]) -> bool:
    """A connection never made is safe to repeat; anything later only for repeatable
    requests."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) \
        or _Requests.retryable(method, headers)


def _workflow_path(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("name", "must be a workflow's name")
    return "/v1/workflows/" + quote(name, safe="")


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = ["AsyncAutoDevClient", "AutoDevClient", "RetryPolicy", "ServiceError"]
