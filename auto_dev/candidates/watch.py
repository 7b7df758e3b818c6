"""PromotionWatch: auto-promoted versions on probation, rolled back when they regress.

Every ``SkillExecuted`` event counts one run (and whether it succeeded) for the tool version it
names (``tool_version_id``; the active version when absent). A version that auto-dev promoted by
itself (``created_by`` is the auto actor) is *watched*: once it has ``min_executions`` runs, its
success rate is compared with the rate of the version it replaced (when that one had at least
``min_executions`` runs too) minus ``margin``, or else with the absolute ``floor``. Falling below
rolls the tool back to that previous version through the candidate store (audited, with the
figures in the reason). After ``watch_executions`` runs without regression the version is
considered stable and no longer watched.

Counts live in memory, per version, over the last ``window`` runs. When a tool is first seen,
they are rebuilt from the ``SkillExecuted`` events kept in the outbox, so a restart does not
forget a probation half-way; event ids are remembered so that an event is never counted twice.

Business-value and feedback signals of freshly promoted versions (tools and workflows) are judged
by :attr:`PromotionWatch.signals` (:mod:`auto_dev.candidates.signal_watch`) with the same margin
and probation length.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev._exceptions import ValidationError
from auto_dev.candidates._kinds import AUTO_ACTOR
from auto_dev.candidates.promotion import SOURCE_MODELS, was_rolled_back
from auto_dev.candidates.signal_watch import SignalWatch
from auto_dev.models import EventRecord, Tool, ToolVersion

if TYPE_CHECKING:
    from auto_dev.candidates.store import CandidateStore
    from auto_dev.db import Database

log = structlog.get_logger(__name__)

#: The actor recorded on rollbacks the watch performs.
WATCH_ACTOR = f"{AUTO_ACTOR}:watch"
_EVENT_TYPE = "SkillExecuted"


@dataclass(slots=True)
class _Runs:
    """The last ``window`` runs of one version, and which events they came from."""

    window: int
    runs: deque[tuple[str, bool]] = field(default_factory=deque)
    ids: set[str] = field(default_factory=set)

    def add(self, event_id: str, success: bool) -> bool:
        if event_id in self.ids:
            return False
        self.runs.append((event_id, success))
        self.ids.add(event_id)
        while len(self.runs) > self.window:
            old, _ = self.runs.popleft()
            self.ids.discard(old)
        return True

    @property
    def total(self) -> int:
        return len(self.runs)

    @property
    def successes(self) -> int:
        return sum(1 for _, ok in self.runs if ok)

    @property
    def rate(self) -> float:
        return self.successes / self.total if self.runs else 0.0


@dataclass(frozen=True, slots=True)
class WatchVerdict:
    """What one observation concluded for a watched version."""

    tenant_id: str
    tool_name: str
    version: int
    successes: int
    total: int
    baseline: float | None  # the previous version's rate, when it had enough runs
    rolled_back: bool
    reason: str


class PromotionWatch:
    """Watches auto-promoted tool versions through ``SkillExecuted`` events.

    Subscribe it with :meth:`attach` (``bus.subscribe(SkillExecuted, watch.handle)``) or feed it
    events with :meth:`observe`.
    """

    def __init__(
        self,
        database: Database,
        store: CandidateStore,
        *,
        min_executions: int = 20,
        margin: float = 0.1,
        floor: float = 0.5,
        watch_executions: int = 200,
        window: int = 500,
        actor: str = WATCH_ACTOR,
    ) -> None:
        if not isinstance(min_executions, int) or min_executions < 1:
            raise ValidationError("min_executions", "must be a positive integer")
        if not 0.0 <= margin < 1.0:
            raise ValidationError("margin", "must be in [0, 1)")
        if not 0.0 <= floor <= 1.0:
            raise ValidationError("floor", "must be in [0, 1]")
        if not isinstance(watch_executions, int) or watch_executions < min_executions:
            raise ValidationError("watch_executions", "must be an integer >= min_executions")
        if not isinstance(window, int) or window < watch_executions:
            raise ValidationError("window", "must be an integer >= watch_executions")
        self.database = database
        self.store = store
        self.min_executions = min_executions
        self.margin = margin
        self.floor = floor
        self.watch_executions = watch_executions
        self.window = window
        self.actor = actor
        self._runs: dict[str, _Runs] = {}
        self._loaded: set[tuple[str, str]] = set()
        self._stable: set[str] = set()
        self._lock = threading.Lock()
        #: Business value and feedback of freshly promoted versions, judged alike.
        self.signals = SignalWatch(database, store, min_signals=min_executions, margin=margin,
                                   watch_signals=watch_executions, actor=actor)

    def attach(self, bus: Any) -> None:
        """Subscribe to every tenant's ``SkillExecuted`` (and, for :attr:`signals`,
        ``SignalRecorded``) on ``bus``."""
        from auto_dev.events import ALL_TENANTS, SkillExecuted

        bus.subscribe(SkillExecuted, self.handle, name="auto_dev.candidates.watch.PromotionWatch",
                      tenant=ALL_TENANTS)
        self.signals.attach(bus)

    async def handle(self, event: Any) -> None:
        """Bus handler (async): see :meth:`observe`."""
        self.observe(event)

    def observe(self, event: Any) -> WatchVerdict | None:
        """Count one ``SkillExecuted`` event; roll back its version if it is watched and has
        regressed. Returns the verdict for a watched version, else ``None``."""
        tenant_id = getattr(event, "tenant_id", None)
        name = getattr(event, "skill_name", None)
        success = getattr(event, "success", None)
        event_id = str(getattr(event, "event_id", "") or id(event))
        if not isinstance(tenant_id, str) or not isinstance(name, str) \
                or not isinstance(success, bool):
            raise ValidationError("event", "must carry tenant_id, skill_name and success")
        with self._lock, self.database.session() as session:
            tool = session.scalars(select(Tool).where(Tool.tenant_id == tenant_id,
                                                      Tool.name == name)).one_or_none()
            if tool is None:
                return None
            self._load(session, tool)
            version = self._version(session, tool, getattr(event, "tool_version_id", None))
            if version is None:
                return None
            self._runs_of(version.id).add(event_id, success)
            return self._judge(session, tool, version)

    def stats(self, version_id: str) -> tuple[int, int]:
        """(successes, runs) counted for a version."""
        runs = self._runs.get(version_id)
        return (runs.successes, runs.total) if runs else (0, 0)

    # -- internals ------------------------------------------------------------------------------

    def _runs_of(self, version_id: str) -> _Runs:
        runs = self._runs.get(version_id)
        if runs is None:
            runs = self._runs[version_id] = _Runs(self.window)
        return runs

    @staticmethod
    def _version(session: Session, tool: Tool, version_id: Any) -> ToolVersion | None:
        if isinstance(version_id, str) and version_id:
            row = session.get(ToolVersion, version_id)
            return row if row is not None and row.tool_id == tool.id else None
        return session.scalars(select(ToolVersion).where(
            ToolVersion.tool_id == tool.id, ToolVersion.is_active.is_(True))).one_or_none()

    def _load(self, session: Session, tool: Tool) -> None:
        """Rebuild this tool's counts from the outbox the first time the tool is seen."""
        key = (tool.tenant_id, tool.name)
        if key in self._loaded:
            return
        self._loaded.add(key)
        versions = {v.id for v in session.scalars(
            select(ToolVersion).where(ToolVersion.tool_id == tool.id))}
        rows = session.execute(
            select(EventRecord.id, EventRecord.payload).where(
                EventRecord.tenant_id == tool.tenant_id, EventRecord.type == _EVENT_TYPE)
            .order_by(EventRecord.created_at.desc()).limit(self.window * 20)
        ).all()
        for event_id, payload in reversed(rows):
            if not isinstance(payload, dict) or payload.get("skill_name") != tool.name:
                continue
            version_id = payload.get("tool_version_id")
            if version_id in versions and isinstance(payload.get("success"), bool):
                self._runs_of(version_id).add(str(event_id), payload["success"])

    def _previous(self, session: Session, version: ToolVersion) -> ToolVersion | None:
        """The version this one replaced: the newest older one that was not rolled back."""
        older = session.scalars(select(ToolVersion).where(
            ToolVersion.tool_id == version.tool_id, ToolVersion.version < version.version)
            .order_by(ToolVersion.version.desc()))
        return next((v for v in older if not was_rolled_back(session, v)), None)

    def _judge(self, session: Session, tool: Tool, version: ToolVersion) -> WatchVerdict | None:
        watched = (version.is_active and version.created_by.startswith(AUTO_ACTOR)
                   and version.source in SOURCE_MODELS and version.id not in self._stable)
        if not watched:
            return None
        runs = self._runs_of(version.id)
        previous = self._previous(session, version)
        before = self._runs.get(previous.id) if previous is not None else None
        baseline = before.rate if before is not None and before.total >= self.min_executions \
            else None

        def verdict(rolled_back: bool, reason: str) -> WatchVerdict:
            return WatchVerdict(tool.tenant_id, tool.name, version.version, runs.successes,
                                runs.total, baseline, rolled_back, reason)

        if runs.total < self.min_executions:
            return verdict(False, f"on probation: {runs.total}/{self.min_executions} runs")
        threshold = baseline - self.margin if baseline is not None else self.floor
        figures = (f"v{version.version} succeeded {runs.successes}/{runs.total} "
                   f"({runs.rate:.0%})")
        if runs.rate < threshold and previous is not None:
            against = (f"v{previous.version}'s {baseline:.0%} minus {self.margin:.0%}"
                       if baseline is not None else f"the floor {self.floor:.0%}")
            reason = f"regression after auto-promotion: {figures}, below {against}"
            self.store.rollback_tool(session, tenant_id=tool.tenant_id, tool_name=tool.name,
                                     actor=self.actor, reason=reason,
                                     to_version=previous.version)
            log.warning("auto_promotion_regressed", tenant_id=tool.tenant_id, tool=tool.name,
                        version=version.version, rate=runs.rate, baseline=baseline)
            return verdict(True, reason)
        if runs.total >= self.watch_executions:
            self._stable.add(version.id)
            self.store.audit(session, tenant_id=tool.tenant_id, actor=self.actor,
                             action="watch.stable", subject_kind="tool_version",
                             subject_id=version.id, reason=f"{figures}: probation over",
                             details={"tool": tool.name, "version": version.version})
            return verdict(False, f"stable: {figures}")
        return verdict(False, f"watching: {figures}")
