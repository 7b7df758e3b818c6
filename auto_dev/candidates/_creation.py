"""Creating candidates: validation, lineage checks and the creation gate.

Part of :class:`~auto_dev.candidates.store.CandidateStore` (split out to keep modules small).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from auto_dev._event_types import CandidateCreated
from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.candidates import promotion as _promotion
from auto_dev.candidates._events import emit
from auto_dev.candidates._kinds import (
    ALPHA_EVOLVER,
    AUTO_ACTOR,
    MEMENTO_SKILLS,
    WORKFLOWS,
    Candidate,
    CandidateKind,
)
from auto_dev.gates._queries import resolve_agent
from auto_dev.gates.capability import CREATE_CANDIDATE, PROPOSE
from auto_dev.models import (
    Agent,
    CandidateStatus,
    SkillCandidate,
    Tool,
    ToolMutation,
    ToolVersion,
    WorkflowVariant,
    new_id,
)

if TYPE_CHECKING:
    from auto_dev.gates.capability import Gatekeeper

log = structlog.get_logger(__name__)


def text_of(field: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValidationError(field, "must be a non-empty string" if not allow_empty
                              else "must be a string")
    return value


def _identifier(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise ValidationError(field, f"must be a Python identifier, got {value!r}")
    return value


def objectives_of(value: Mapping[str, Any] | None, field: str = "objectives") -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of objective name -> number")
    out: dict[str, float] = {}
    for key, number in value.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(field, "keys must be objective names")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ValidationError(f"{field}.{key}", "must be a number")
        if not math.isfinite(float(number)):
            raise ValidationError(f"{field}.{key}", "must be a finite number")
        out[key] = float(number)
    return out


class CreationMixin:
    """The ``create_*`` methods of the candidate store."""

    gatekeeper: Gatekeeper
    bus: Any

    @staticmethod
    def active_version(session: Session, tenant_id: str, tool_id: str) -> ToolVersion | None:
        return session.scalars(
            select(ToolVersion).where(ToolVersion.tenant_id == tenant_id,
                                      ToolVersion.tool_id == tool_id,
                                      ToolVersion.is_active.is_(True))
        ).one_or_none()

    @staticmethod
    def _tool(session: Session, tenant_id: str, tool_id: Any, field: str = "tool_id") -> Tool:
        tool = session.get(Tool, tool_id) if isinstance(tool_id, str) else None
        if tool is None or tool.tenant_id != tenant_id:
            raise NotFoundError(f"{field}: tool {tool_id!r} does not exist in tenant {tenant_id!r}")
        return tool

    # -- creation -------------------------------------------------------------------------------

    def _admit(
        self, session: Session, *, tenant_id: str, agent_id: str | None, capability: str,
        kind: CandidateKind, candidate_id: str, proposed_by: str | None = None,
    ) -> str | None:
        """Gate a creation; return the resolved Agent id. A change a named human proposes is
        gated like their approvals: the tenant's toggles, the human instead of maturity."""
        if proposed_by is not None:
            self.gatekeeper.require(session, tenant_id=tenant_id, agent_id=None,
                                    capability=capability, action=PROPOSE,
                                    reviewed_by=proposed_by, subject=(kind.value, candidate_id))
            return None
        self.gatekeeper.require(session, tenant_id=tenant_id, agent_id=agent_id,
                                capability=capability, action=CREATE_CANDIDATE,
                                subject=(kind.value, candidate_id))
        if agent_id is None:
            return None
        agent = resolve_agent(session, tenant_id, agent_id)
        assert agent is not None  # the gate denied otherwise
        return agent.id

    def create_tool_mutation(
        self,
        session: Session,
        *,
        tenant_id: str,
        tool_id: str,
        code: str,
        operator: str,
        entrypoint: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        parent_version_id: str | None = None,
        parent_mutation_id: str | None = None,
        second_parent_id: str | None = None,
        diff: str | None = None,
        ast_hash: str | None = None,
        island: int = 0,
        generation: int = 0,
        objectives: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        capability: str = ALPHA_EVOLVER,
        proposed_by: str | None = None,
    ) -> ToolMutation:
        """Store a candidate new version of a tool, with its lineage (status ``pending``).

        Without ``parent_version_id`` and ``parent_mutation_id`` the parent is the tool's active
        version. ``diff`` defaults to a unified diff against the parent. ``proposed_by`` names
        the human who wrote the change (a ``manual`` candidate, see
        :meth:`auto_dev.service.AutoDev.propose_tool_change`); it is recorded in ``details``.
        """
        text_of("code", code, allow_empty=True)
        text_of("operator", operator)
        if proposed_by is not None:
            proposed_by = text_of("proposed_by", proposed_by).strip()
            if proposed_by == AUTO_ACTOR or agent_id is not None:
                raise ValidationError("proposed_by", "must name the human proposing the "
                                      "change (and no agent)")
        tool = self._tool(session, tenant_id, tool_id)
        entry = _identifier("entrypoint", entrypoint or tool.entrypoint)
        objective_values = objectives_of(objectives)
        if not isinstance(island, int) or not isinstance(generation, int):
            raise ValidationError("island" if not isinstance(island, int) else "generation",
                                  "must be an integer")
        parent_code = self._check_lineage(session, tenant_id, tool, parent_version_id,
                                          parent_mutation_id, second_parent_id)
        if parent_version_id is None and parent_mutation_id is None:
            active = self.active_version(session, tenant_id, tool.id)
            parent_version_id = active.id if active else None
            parent_code = active.code if active else ""
        candidate_id = new_id()
        agent = self._admit(session, tenant_id=tenant_id, agent_id=agent_id,
                            capability=capability, kind=CandidateKind.TOOL_MUTATION,
                            candidate_id=candidate_id, proposed_by=proposed_by)
        extra = {"proposed_by": proposed_by} if proposed_by is not None else {}
        row = ToolMutation(
            id=candidate_id, tenant_id=tenant_id, tool_id=tool.id, agent_id=agent, run_id=run_id,
            parent_version_id=parent_version_id, parent_mutation_id=parent_mutation_id,
            second_parent_id=second_parent_id, code=code, entrypoint=entry,
            diff=diff if diff is not None else _promotion.render_diff(parent_code, code,
                                                                      tool.name),
            operator=operator, ast_hash=ast_hash, island=island, generation=generation,
            status=CandidateStatus.PENDING.value, objectives=objective_values,
            details={**dict(details or {}), "capability": capability, **extra},
            created_at=self.gatekeeper.now(), updated_at=self.gatekeeper.now(),
        )
        session.add(row)
        session.flush()
        self._created(session, row, CandidateKind.TOOL_MUTATION, capability,
                      actor=f"user:{proposed_by}" if proposed_by is not None else None)
        return row

    def _check_lineage(
        self, session: Session, tenant_id: str, tool: Tool, parent_version_id: str | None,
        parent_mutation_id: str | None, second_parent_id: str | None,
    ) -> str:
        """Validate the parents belong to this tool and tenant; return the parent's code."""
        code = ""
        if parent_version_id is not None:
            version = session.get(ToolVersion, parent_version_id)
            if version is None or version.tenant_id != tenant_id or version.tool_id != tool.id:
                raise NotFoundError(f"parent_version_id: version {parent_version_id!r} is not a "
                                    f"version of tool {tool.name!r}")
            code = version.code
        for field, ref in (("parent_mutation_id", parent_mutation_id),
                           ("second_parent_id", second_parent_id)):
            if ref is None:
                continue
            parent = session.get(ToolMutation, ref)
            if parent is None or parent.tenant_id != tenant_id or parent.tool_id != tool.id:
                raise NotFoundError(f"{field}: mutation {ref!r} is not a candidate of tool "
                                    f"{tool.name!r}")
            if field == "parent_mutation_id":
                code = parent.code
        return code

    def create_skill_candidate(
        self,
        session: Session,
        *,
        tenant_id: str,
        name: str,
        code: str,
        entrypoint: str,
        strategy: str,
        description: str = "",
        tool_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        failure_pattern: str = "",
        source_episode_ids: Iterable[str] = (),
        tests: Iterable[Mapping[str, Any]] = (),
        diff: str | None = None,
        objectives: Mapping[str, Any] | None = None,
        exchange: Iterable[Any] = (),
        capability: str = MEMENTO_SKILLS,
    ) -> SkillCandidate:
        """Store a skill learned from failed episodes (``strategy`` says how it was made)."""
        text_of("name", name)
        text_of("code", code, allow_empty=True)
        _identifier("entrypoint", entrypoint)
        text_of("strategy", strategy)
        objective_values = objectives_of(objectives)
        parent_code = ""
        validation: dict[str, Any] = {"capability": capability, "parent_version_id": None}
        if tool_id is not None:
            tool = self._tool(session, tenant_id, tool_id)
            active = self.active_version(session, tenant_id, tool.id)
            parent_code = active.code if active else ""
            # The version the skill repairs: lineage and review compare with it even after
            # the skill itself has become the active version.
            validation["parent_version_id"] = active.id if active else None
        episodes = [text_of("source_episode_ids[]", e) for e in source_episode_ids]
        test_rows = []
        for i, test in enumerate(tests):
            if not isinstance(test, Mapping):
                raise ValidationError(f"tests[{i}]", "must be an object")
            test_rows.append(dict(test))
        candidate_id = new_id()
        agent = self._admit(session, tenant_id=tenant_id, agent_id=agent_id,
                            capability=capability, kind=CandidateKind.SKILL_CANDIDATE,
                            candidate_id=candidate_id)
        row = SkillCandidate(
            id=candidate_id, tenant_id=tenant_id, agent_id=agent, tool_id=tool_id, run_id=run_id,
            name=name, description=description, code=code, entrypoint=entrypoint,
            diff=diff if diff is not None else _promotion.render_diff(parent_code, code, name),
            strategy=strategy, failure_pattern=failure_pattern, source_episode_ids=episodes,
            tests=test_rows, validation=validation, exchange=list(exchange),
            status=CandidateStatus.PENDING.value, objectives=objective_values,
            created_at=self.gatekeeper.now(), updated_at=self.gatekeeper.now(),
        )
        session.add(row)
        session.flush()
        self._created(session, row, CandidateKind.SKILL_CANDIDATE, capability)
        return row

    def create_workflow_variant(
        self,
        session: Session,
        *,
        tenant_id: str,
        name: str,
        definition: Mapping[str, Any],
        agent_id: str | None = None,
        parent_id: str | None = None,
        run_id: str | None = None,
        operator: str = "seed",
        objectives: Mapping[str, Any] | None = None,
        fitness: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> WorkflowVariant:
        """Store a candidate workflow definition (gated by ``auto_dev.workflows``); ``details``
        holds its evidence and lineage (JSON)."""
        text_of("name", name)
        text_of("operator", operator)
        if not isinstance(definition, Mapping):
            raise ValidationError("definition", "must be an object (the workflow's steps)")
        if fitness is not None and not (isinstance(fitness, int | float)
                                        and math.isfinite(fitness)):
            raise ValidationError("fitness", "must be a finite number")
        objective_values = objectives_of(objectives)
        if details is not None and not isinstance(details, Mapping):
            raise ValidationError("details", "must be an object")
        if parent_id is not None:
            parent = session.get(WorkflowVariant, parent_id)
            if parent is None or parent.tenant_id != tenant_id:
                raise NotFoundError(f"parent_id: workflow variant {parent_id!r} does not exist "
                                    f"in tenant {tenant_id!r}")
        candidate_id = new_id()
        agent = self._admit(session, tenant_id=tenant_id, agent_id=agent_id, capability=WORKFLOWS,
                            kind=CandidateKind.WORKFLOW_VARIANT, candidate_id=candidate_id)
        row = WorkflowVariant(
            id=candidate_id, tenant_id=tenant_id, agent_id=agent, parent_id=parent_id,
            run_id=run_id, name=name, definition=dict(definition), operator=operator,
            status=CandidateStatus.PENDING.value, objectives=objective_values,
            fitness=float(fitness) if fitness is not None else None,
            details={**dict(details or {}), "capability": WORKFLOWS},
            created_at=self.gatekeeper.now(), updated_at=self.gatekeeper.now(),
        )
        session.add(row)
        session.flush()
        self._created(session, row, CandidateKind.WORKFLOW_VARIANT, WORKFLOWS)
        return row

    def _created(
        self, session: Session, row: Candidate, kind: CandidateKind, capability: str,
        actor: str | None = None,
    ) -> None:
        log.info("candidate_created", tenant_id=row.tenant_id, kind=kind.value,
                 candidate_id=row.id, capability=capability)
        agent = session.get(Agent, row.agent_id) if row.agent_id else None
        emit(self.bus, session, CandidateCreated(tenant_id=row.tenant_id,
             candidate_kind=kind.value, candidate_id=row.id, tool_name=_target_name(session, row),
             actor=actor or (f"agent:{agent.key}" if agent else AUTO_ACTOR),
             metadata={"capability": capability, "status": row.status}))


def _target_name(session: Session, row: Candidate) -> str | None:
    """The tool (or skill/workflow) name a candidate is about, for events and listings."""
    if isinstance(row, ToolMutation):
        tool = session.get(Tool, row.tool_id)
        return tool.name if tool else None
    return row.name
