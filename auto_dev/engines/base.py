"""Shared plumbing for learning engines: the context they run in, result types, run locks,
and loading a tool's code and tests from the database."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from auto_dev._exceptions import NotFoundError, StorageError
from auto_dev.evolution.program import Program, Proposal
from auto_dev.models import EvolutionRun, TestCase, Tool, ToolVersion, utcnow
from auto_dev.sandbox.base import Case, Limits, SandboxResult

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from auto_dev.abc import Mutator, Sandbox
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.config import Settings
    from auto_dev.db import Database
    from auto_dev.events import EventBus
    from auto_dev.gates.capability import Gatekeeper

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """A proposal's sandbox outcome and objective vector. ``passed`` is never true for an empty,
    comment-only or unchanged program."""

    proposal: Proposal
    sandbox: SandboxResult
    objectives: dict[str, float]
    passed: bool
    reason: str
    evaluation_id: str | None = None


@dataclass(slots=True)
class EvolutionRunResult:
    """What one cycle did."""

    engine: str
    target: str
    status: str  # completed | skipped | denied | failed
    reason: str = ""
    run_id: str | None = None
    evaluations: int = 0
    candidate_ids: list[str] = field(default_factory=list)
    offered_ids: list[str] = field(default_factory=list)
    promoted_ids: list[str] = field(default_factory=list)
    pass_rate_before: float = 0.0
    pass_rate_after: float = 0.0
    strategy: str = ""
    seconds: float = 0.0

    @property
    def improved(self) -> bool:
        return self.pass_rate_after > self.pass_rate_before


@dataclass(slots=True)
class EngineContext:
    """Everything an engine may use. Built by :class:`auto_dev.AutoDev`."""

    database: Database
    bus: EventBus
    sandbox: Sandbox
    store: CandidateStore
    gatekeeper: Gatekeeper
    settings: Settings
    tenant_id: str
    mutators: list[Mutator] = field(default_factory=list)
    #: Mix weights of ``mutators`` and a sentence saying which strategy they amount to.
    mutator_weights: list[float] = field(default_factory=list)
    strategy: str = "offline: AST repair operators"
    llm: Any = None  # auto_dev.llm.client.LLMClient when a model is configured
    skill_writer: Any = None  # auto_dev.llm.skills.SkillWriter when a model is configured

    @property
    def limits(self) -> Limits:
        return Limits(timeout_s=self.settings.case_timeout_s,
                      memory_mb=self.settings.case_memory_mb)

    @property
    def offline(self) -> bool:
        return self.llm is None


@dataclass(frozen=True, slots=True)
class ToolSnapshot:
    """A tool's active version and its test cases, read in one transaction."""

    tool_id: str
    name: str
    description: str
    version_id: str
    version: int
    program: Program
    cases: tuple[Case, ...]


def episode_analysis(
    context: EngineContext, episode_id: str, tenant_id: str | None = None
) -> dict[str, Any]:
    """The learning signal of one episode: tool, inputs, expected value, error and pattern."""
    from auto_dev.engines._signatures import describe_signature, exception_of, failure_signature
    from auto_dev.models import Episode

    tid = tenant_id or context.tenant_id
    with context.database.session() as session:
        episode = session.get(Episode, episode_id)
        if episode is None or episode.tenant_id != tid:
            raise NotFoundError(f"episode {episode_id!r} does not exist in tenant {tid!r}")
        exc_type, message = exception_of(episode.error_trace)
        details = episode.details or {}
        return {
            "episode_id": episode.id,
            "tool_name": episode.tool_name,
            "task_description": episode.task_description,
            "success": episode.success,
            "error_trace": episode.error_trace,
            "error_type": exc_type,
            "error_message": message,
            "signature": failure_signature(episode.tool_name, episode.error_trace),
            "pattern": describe_signature(episode.tool_name, episode.error_trace),
            "inputs": details.get("inputs") or {},
            "expected": details.get("expected"),
            "has_expected": "expected" in details,
            "segments": len(episode.segments),
        }


def load_tool(session: Session, tenant_id: str, name: str) -> ToolSnapshot:
    """Read ``name``'s active version and tests, or raise :class:`NotFoundError`."""
    tool = session.scalars(
        select(Tool).where(Tool.tenant_id == tenant_id, Tool.name == name)
    ).one_or_none()
    if tool is None:
        raise NotFoundError(f"tool {name!r} does not exist in tenant {tenant_id!r}")
    active = session.scalars(
        select(ToolVersion).where(
            ToolVersion.tenant_id == tenant_id,
            ToolVersion.tool_id == tool.id,
            ToolVersion.is_active.is_(True),
        )
    ).one_or_none()
    if active is None:
        raise NotFoundError(f"tool {name!r} has no active version")
    rows = session.scalars(
        select(TestCase)
        .where(TestCase.tenant_id == tenant_id, TestCase.tool_id == tool.id)
        .order_by(TestCase.created_at, TestCase.id)
    ).all()
    cases = tuple(
        Case(
            args=tuple(r.args or []),
            kwargs=dict(r.kwargs or {}),
            expected=r.expected,
            has_expected=r.has_expected,
            name=r.id,
        )
        for r in rows
    )
    return ToolSnapshot(
        tool_id=tool.id,
        name=tool.name,
        description=tool.description,
        version_id=active.id,
        version=active.version,
        program=Program(code=active.code, entrypoint=active.entrypoint, id=active.id),
        cases=cases,
    )


@contextlib.contextmanager
def run_lock(
    database: Database,
    *,
    tenant_id: str,
    engine: str,
    target: str,
    trigger: str,
    budget: int,
    tool_id: str | None = None,
) -> Iterator[EvolutionRun | None]:
    """Hold the one-running-cycle-per-target lock for the duration of the block.

    Yields the new :class:`EvolutionRun` row, or ``None`` when another cycle on the same target
    is already running (the partial unique index on running runs refuses the insert). On exit
    the run is marked ``completed`` (or ``failed`` with the error) and the lock is released.
    """
    run = EvolutionRun(
        tenant_id=tenant_id,
        engine=engine,
        target=target,
        tool_id=tool_id,
        trigger=trigger,
        status="running",
        budget=budget,
        heartbeat_at=utcnow(),
    )
    try:
        with database.session() as session:
            session.add(run)
    except (IntegrityError, StorageError) as exc:
        if _is_unique_violation(exc):
            log.info("cycle_already_running", engine=engine, target=target, tenant_id=tenant_id)
            yield None
            return
        raise
    started = time.monotonic()
    try:
        yield run
    except BaseException as exc:
        _finish(database, run, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    else:
        status = run.status if run.status not in ("running",) else "completed"
        _finish(database, run, status=status, error=run.error)
    finally:
        log.debug("cycle_finished", run_id=run.id, seconds=round(time.monotonic() - started, 3))


def _finish(database: Database, run: EvolutionRun, *, status: str, error: str | None) -> None:
    with database.session() as session:
        row = session.get(EvolutionRun, run.id)
        if row is None:
            return
        row.status = status
        row.error = error
        row.evaluations = run.evaluations
        row.stats = dict(run.stats or {})
        row.state = dict(run.state or {})
        row.finished_at = utcnow()
    run.status = status


def _is_unique_violation(exc: BaseException) -> bool:
    text = str(exc).lower()
    cause = exc.__cause__
    if cause is not None:
        text += " " + str(cause).lower()
    return "unique" in text or "duplicate key" in text


def recover_interrupted_runs(database: Database, tenant_id: str | None = None) -> int:
    """Mark runs left ``running`` by a dead process as ``interrupted``, releasing their locks.

    Called at start-up: a process that is starting cannot be running any cycle yet, so every
    ``running`` row of this database is stale. Returns how many were released.
    """
    with database.session() as session:
        query = select(EvolutionRun).where(EvolutionRun.status == "running")
        if tenant_id is not None:
            query = query.where(EvolutionRun.tenant_id == tenant_id)
        rows = session.scalars(query).all()
        for row in rows:
            row.status = "interrupted"
            row.finished_at = utcnow()
            row.error = "process ended while the cycle was running; resumable from state"
        return len(rows)
