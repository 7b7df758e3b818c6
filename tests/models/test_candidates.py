"""Candidate lifecycle (transition) and the constraints the schema enforces on candidates."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from auto_dev._exceptions import IllegalTransitionError, StorageError
from auto_dev.db import Database
from auto_dev.models import (
    ALLOWED_TRANSITIONS,
    CandidateStatus,
    EvolutionRun,
    SkillCandidate,
    Tool,
    ToolMutation,
    ToolVersion,
    WorkflowVariant,
    transition,
)

STATUSES = list(CandidateStatus)


def _mutation(status: str = "pending") -> ToolMutation:
    return ToolMutation(
        id="m1",
        tenant_id="t1",
        tool_id="x",
        code="def f(): pass",
        entrypoint="f",
        operator="test",
        status=status,
    )


def _tool(session, tenant_id: str, name: str = "adder") -> Tool:  # type: ignore[no-untyped-def]
    tool = Tool(tenant_id=tenant_id, name=name, entrypoint="add")
    session.add(tool)
    session.flush()
    return tool


class TestTransition:
    """transition() allows exactly the lifecycle's moves."""

    @given(current=st.sampled_from(STATUSES), target=st.sampled_from(STATUSES))
    def test_allowed_iff_in_the_table(
        self, current: CandidateStatus, target: CandidateStatus
    ) -> None:
        """A move succeeds exactly when ALLOWED_TRANSITIONS lists it; otherwise nothing changes."""
        candidate = _mutation(current.value)
        if target in ALLOWED_TRANSITIONS[current]:
            transition(candidate, target)
            assert candidate.status == target.value
            assert candidate.updated_at is not None
        else:
            with pytest.raises(IllegalTransitionError, match=f"{current.value} to {target.value}"):
                transition(candidate, target)
            assert candidate.status == current.value

    def test_happy_path_through_promotion_and_rollback(self) -> None:
        """pending -> evaluating -> passed -> approved -> promoted -> rolled_back is legal."""
        candidate = _mutation()
        for step in ("evaluating", "passed", "approved", "promoted", "rolled_back"):
            transition(candidate, step)
        assert candidate.status == "rolled_back"

    def test_every_status_is_reachable_from_pending(self) -> None:
        """The lifecycle graph has no dead entries: every status can be reached."""
        seen = {CandidateStatus.PENDING}
        queue = deque(seen)
        while queue:
            for nxt in ALLOWED_TRANSITIONS[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        assert seen == set(CandidateStatus)

    def test_terminal_statuses_have_no_exit(self) -> None:
        """failed, rejected and rolled_back are final; a failed candidate can never be promoted."""
        for status in ("failed", "rejected", "rolled_back"):
            assert ALLOWED_TRANSITIONS[CandidateStatus(status)] == frozenset()
        with pytest.raises(IllegalTransitionError):
            transition(_mutation("failed"), "promoted")

    def test_unknown_status_is_refused(self) -> None:
        """A status that is not in the lifecycle raises ValueError (not silently stored)."""
        with pytest.raises(ValueError):
            transition(_mutation(), "shipped")


class TestCandidateRows:
    """Candidates persisted with lineage and real foreign keys."""

    def test_mutation_lineage_round_trips(self, database: Database, tenant_id: str) -> None:
        """Parent version, parents and objective vector are stored and read back."""
        with database.session() as s:
            tool = _tool(s, tenant_id)
            version = ToolVersion(
                tenant_id=tenant_id,
                tool_id=tool.id,
                version=1,
                code="def add(a, b): return a - b",
                entrypoint="add",
                is_active=True,
            )
            s.add(version)
            s.flush()
            parent = ToolMutation(
                tenant_id=tenant_id,
                tool_id=tool.id,
                parent_version_id=version.id,
                code="def add(a, b): return a + b",
                entrypoint="add",
                operator="binop_swap",
                generation=1,
                island=2,
                objectives={"pass_rate": 1.0, "latency_s": 0.001},
            )
            s.add(parent)
            s.flush()
            child = ToolMutation(
                tenant_id=tenant_id,
                tool_id=tool.id,
                parent_mutation_id=parent.id,
                second_parent_id=parent.id,
                code="def add(a, b):\n    return b + a",
                entrypoint="add",
                operator="crossover",
                generation=2,
            )
            s.add(child)
        child_id, parent_id = child.id, parent.id
        with database.session() as s:
            stored = s.get(ToolMutation, child_id)
            assert stored is not None
            assert stored.parent_mutation_id == parent_id
            assert stored.status == CandidateStatus.PENDING.value
            parent_row = s.get(ToolMutation, parent_id)
            assert parent_row is not None
            assert parent_row.objectives == {"pass_rate": 1.0, "latency_s": 0.001}
            assert parent_row.island == 2

    def test_unknown_tool_is_refused(self, database: Database, tenant_id: str) -> None:
        """A mutation of a tool that does not exist violates the foreign key."""
        with pytest.raises(StorageError, match="constraint"), database.session() as s:
            s.add(
                ToolMutation(
                    tenant_id=tenant_id, tool_id="missing", code="x", entrypoint="f", operator="op"
                )
            )

    def test_deleting_a_parent_keeps_the_child(self, database: Database, tenant_id: str) -> None:
        """ON DELETE SET NULL: a child outlives its parent mutation with the link cleared."""
        with database.session() as s:
            tool = _tool(s, tenant_id)
            parent = ToolMutation(
                tenant_id=tenant_id, tool_id=tool.id, code="a", entrypoint="f", operator="op"
            )
            s.add(parent)
            s.flush()
            child = ToolMutation(
                tenant_id=tenant_id,
                tool_id=tool.id,
                code="b",
                entrypoint="f",
                operator="op",
                parent_mutation_id=parent.id,
            )
            s.add(child)
        child_id = child.id
        with database.session() as s:
            s.delete(s.get(ToolMutation, parent.id))
        with database.session() as s:
            stored = s.get(ToolMutation, child_id, populate_existing=True)
            assert stored is not None and stored.parent_mutation_id is None

    def test_deleting_a_tool_cascades(self, database: Database, tenant_id: str) -> None:
        """ON DELETE CASCADE: a tool's versions and mutations go with it; skills only unlink."""
        with database.session() as s:
            tool = _tool(s, tenant_id)
            s.add(
                ToolVersion(
                    tenant_id=tenant_id, tool_id=tool.id, version=1, code="c", entrypoint="f"
                )
            )
            s.add(
                ToolMutation(
                    tenant_id=tenant_id, tool_id=tool.id, code="c", entrypoint="f", operator="op"
                )
            )
            skill = SkillCandidate(
                tenant_id=tenant_id,
                tool_id=tool.id,
                name="s",
                code="c",
                entrypoint="f",
                strategy="retrieve_and_repair",
            )
            s.add(skill)
        tool_id, skill_id = tool.id, skill.id
        with database.session() as s:
            s.execute(Tool.__table__.delete().where(Tool.id == tool_id))
        with database.session() as s:
            assert s.scalars(select(ToolMutation)).all() == []
            assert s.scalars(select(ToolVersion)).all() == []
            remaining = s.get(SkillCandidate, skill_id)
            assert remaining is not None and remaining.tool_id is None

    def test_workflow_variant_definition_is_json(self, database: Database, tenant_id: str) -> None:
        """A workflow definition (steps, conditions, retries) round-trips as JSON."""
        definition = {"steps": [{"tool": "search", "retries": 2}, {"llm": "summarise"}]}
        with database.session() as s:
            variant = WorkflowVariant(tenant_id=tenant_id, name="wf", definition=definition)
            s.add(variant)
        with database.session() as s:
            stored = s.get(WorkflowVariant, variant.id)
            assert stored is not None and stored.definition == definition


class TestPartialUniqueIndexes:
    """The schema enforces one active version per tool and one running run per target."""

    def test_two_active_versions_are_refused(self, database: Database, tenant_id: str) -> None:
        """A second active version of the same tool violates the partial unique index."""
        with database.session() as s:
            tool = _tool(s, tenant_id)
            s.add(
                ToolVersion(
                    tenant_id=tenant_id,
                    tool_id=tool.id,
                    version=1,
                    code="a",
                    entrypoint="f",
                    is_active=True,
                )
            )
            s.add(
                ToolVersion(
                    tenant_id=tenant_id,
                    tool_id=tool.id,
                    version=2,
                    code="b",
                    entrypoint="f",
                    is_active=False,
                )
            )
            tool_id = tool.id
        with pytest.raises(StorageError, match="constraint"), database.session() as s:
            s.add(
                ToolVersion(
                    tenant_id=tenant_id,
                    tool_id=tool_id,
                    version=3,
                    code="c",
                    entrypoint="f",
                    is_active=True,
                )
            )

    def test_switching_the_active_version_in_one_transaction(
        self, database: Database, tenant_id: str
    ) -> None:
        """Deactivate-then-activate (flushed in that order) is how promotion swaps versions."""
        with database.session() as s:
            tool = _tool(s, tenant_id)
            old = ToolVersion(
                tenant_id=tenant_id,
                tool_id=tool.id,
                version=1,
                code="a",
                entrypoint="f",
                is_active=True,
            )
            new = ToolVersion(
                tenant_id=tenant_id,
                tool_id=tool.id,
                version=2,
                code="b",
                entrypoint="f",
                is_active=False,
            )
            s.add_all([old, new])
        with database.session() as s:
            s.get(ToolVersion, old.id).is_active = False  # type: ignore[union-attr]
            s.flush()
            s.get(ToolVersion, new.id).is_active = True  # type: ignore[union-attr]
        with database.session() as s:
            active = s.scalars(select(ToolVersion.version).where(ToolVersion.is_active)).all()
            assert active == [2]

    def test_one_running_run_per_target(self, database: Database, tenant_id: str) -> None:
        """A second running cycle of the same engine on the same target is refused."""
        with database.session() as s:
            s.add(EvolutionRun(tenant_id=tenant_id, engine="alpha", target="adder"))
            s.add(
                EvolutionRun(tenant_id=tenant_id, engine="alpha", target="adder", status="finished")
            )
            s.add(EvolutionRun(tenant_id=tenant_id, engine="alpha", target="other"))
        with pytest.raises(StorageError, match="constraint"), database.session() as s:
            s.add(EvolutionRun(tenant_id=tenant_id, engine="alpha", target="adder"))
