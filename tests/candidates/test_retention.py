"""Pruning old closed candidates: what goes, what stays (lineage intact), in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auto_dev._exceptions import ValidationError
from auto_dev.models import (
    AuditEntry,
    Evaluation,
    EvolutionRun,
    SkillCandidate,
    ToolMutation,
    WorkflowVariant,
    new_id,
)
from tests.gates.conftest import AGENT, TENANT, World

OLD = timedelta(days=40)
STATUSES = ("pending", "evaluating", "passed", "failed", "approved", "rejected", "promoted",
            "rolled_back")


def _mutation(world: World, *, status: str, age: timedelta, parent: str | None = None,
              second: str | None = None, run_id: str | None = None,
              tenant_id: str = TENANT, tool_id: str | None = None) -> str:
    """A mutation row as any engine leaves it (written directly: this tests retention, not
    creation), with one evaluation."""
    when = datetime.now(UTC) - age
    cid = new_id()
    with world.database.session() as s:
        s.add(ToolMutation(id=cid, tenant_id=tenant_id, tool_id=tool_id or world.tool_id,
                           code=f"def inc(x):\n    return x + {len(cid) % 7}\n",
                           entrypoint="inc", operator="op", status=status,
                           parent_mutation_id=parent, second_parent_id=second, run_id=run_id,
                           created_at=when, updated_at=when))
        s.flush()
        s.add(Evaluation(tenant_id=tenant_id, candidate_kind="tool_mutation", candidate_id=cid,
                         backend="process"))
    return cid


def _exists(world: World, model: Any, cid: str) -> bool:
    with world.database.session() as s:
        return s.get(model, cid) is not None


def _evaluations(world: World, cid: str) -> int:
    with world.database.session() as s:
        return int(s.scalar(select(func.count()).select_from(Evaluation).where(
            Evaluation.candidate_id == cid)) or 0)


def _prune(world: World, **kw: Any) -> Any:
    with world.database.session() as s:
        return world.store.prune(s, tenant_id=kw.pop("tenant_id", TENANT),
                                 older_than_days=kw.pop("older_than_days", 30),
                                 actor=kw.pop("actor", "ops"), **kw)


class TestWhatIsPruned:
    """Old failed and rejected candidates go with their evaluations; everything else stays."""

    def test_old_closed_go_recent_and_open_stay(self, world: World) -> None:
        """Only candidates closed (failed/rejected) before the cutoff are deleted."""
        old_failed = _mutation(world, status="failed", age=OLD)
        old_rejected = _mutation(world, status="rejected", age=OLD)
        recent = _mutation(world, status="failed", age=timedelta(days=3))
        open_ones = [_mutation(world, status=st_, age=OLD)
                     for st_ in ("pending", "passed", "approved", "promoted", "rolled_back")]
        result = _prune(world)
        assert (result.candidates, result.evaluations) == (2, 2)
        assert not _exists(world, ToolMutation, old_failed)
        assert not _exists(world, ToolMutation, old_rejected)
        assert _evaluations(world, old_failed) == 0
        for kept in [recent, *open_ones]:
            assert _exists(world, ToolMutation, kept) and _evaluations(world, kept) == 1

    def test_ancestors_of_kept_candidates_stay(self, world: World) -> None:
        """An old failed root whose descendant stays is kept, and so are its own parents."""
        grandparent = _mutation(world, status="failed", age=OLD)
        root = _mutation(world, status="failed", age=OLD, parent=grandparent)
        dead_leaf = _mutation(world, status="failed", age=OLD, parent=root)
        crossed = _mutation(world, status="rejected", age=OLD)
        live = _mutation(world, status="passed", age=OLD, parent=root, second=crossed)
        result = _prune(world)
        assert result.counts[0].kind == "tool_mutation"
        assert (result.counts[0].candidates, result.counts[0].kept_as_ancestors) == (1, 3)
        assert not _exists(world, ToolMutation, dead_leaf)
        for kept in (grandparent, root, crossed, live):
            assert _exists(world, ToolMutation, kept)

    def test_candidates_of_a_running_cycle_stay(self, world: World) -> None:
        """A running cycle's stepping stones may still become parents: they are kept."""
        with world.database.session() as s:
            run = EvolutionRun(tenant_id=TENANT, engine="alpha_evolver", target="inc",
                               status="running")
            s.add(run)
            s.flush()
            run_id = run.id
        stone = _mutation(world, status="failed", age=OLD, run_id=run_id)
        assert _prune(world, older_than_days=0).candidates == 0
        assert _exists(world, ToolMutation, stone)

    def test_skills_and_workflows(self, world: World) -> None:
        """Skills and workflow variants are pruned the same way (variants keep ancestors)."""
        when = datetime.now(UTC) - OLD
        with world.database.session() as s:
            skill = SkillCandidate(tenant_id=TENANT, name="s", code="def s():\n    return 1\n",
                                   entrypoint="s", strategy="t", status="failed",
                                   created_at=when, updated_at=when)
            parent = WorkflowVariant(tenant_id=TENANT, name="w", definition={"a": 1},
                                     status="rejected", created_at=when, updated_at=when)
            s.add_all([skill, parent])
            s.flush()
            child = WorkflowVariant(tenant_id=TENANT, name="w", definition={"a": 2},
                                    parent_id=parent.id, status="approved", created_at=when,
                                    updated_at=when)
            s.add(child)
            s.flush()
            ids = skill.id, parent.id, child.id
        counts = {c.kind: c for c in _prune(world).counts}
        assert counts["skill_candidate"].candidates == 1
        assert (counts["workflow_variant"].candidates,
                counts["workflow_variant"].kept_as_ancestors) == (0, 1)
        assert not _exists(world, SkillCandidate, ids[0])
        assert _exists(world, WorkflowVariant, ids[1]) and _exists(world, WorkflowVariant, ids[2])

    def test_statuses_and_tenants_are_respected(self, world: World) -> None:
        """--status failed leaves rejected ones; another tenant's rows are never touched."""
        rejected = _mutation(world, status="rejected", age=OLD)
        with world.database.session() as s:
            world.database.ensure_tenant(s, "beta")
            beta_tool = world.store.register_tool(s, tenant_id="beta", name="inc",
                                                  code="def inc(x):\n    return x\n",
                                                  entrypoint="inc").id
        theirs = _mutation(world, status="failed", age=OLD, tenant_id="beta", tool_id=beta_tool)
        assert _prune(world, statuses=["failed"]).candidates == 0
        assert _exists(world, ToolMutation, rejected) and _exists(world, ToolMutation, theirs)


class TestDryRunAndAudit:
    """A dry run counts the same rows and changes nothing; a real run is audited."""

    def test_dry_run_matches_the_real_run(self, world: World) -> None:
        """Counts agree; only the real run deletes and writes an audit entry."""
        for _ in range(3):
            _mutation(world, status="failed", age=OLD)
        dry = _prune(world, dry_run=True)
        with world.database.session() as s:
            assert s.scalar(select(func.count()).select_from(ToolMutation)) == 3
            assert s.scalars(select(AuditEntry).where(
                AuditEntry.action == "candidates.pruned")).all() == []
        real = _prune(world, actor="ops-team")
        assert (dry.candidates, dry.evaluations) == (real.candidates, real.evaluations) == (3, 3)
        assert dry.dry_run and not real.dry_run
        with world.database.session() as s:
            audit = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "candidates.pruned")).one()
            assert audit.actor == "ops-team"
            assert audit.details["tool_mutation"]["candidates"] == 3

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"statuses": ["passed"]}, "status"),
        ({"statuses": ["promoted", "failed"]}, "status"),
        ({"statuses": []}, "status"),
        ({"older_than_days": -1}, "older_than_days"),
        ({"older_than_days": 1.5}, "older_than_days"),
        ({"older_than_days": True}, "older_than_days"),
        ({"actor": " "}, "actor"),
    ])
    def test_bad_input_deletes_nothing(self, world: World, kwargs: dict[str, Any],
                                       field: str) -> None:
        """Bad input is refused naming the field, before anything is deleted."""
        cid = _mutation(world, status="failed", age=OLD)
        with pytest.raises(ValidationError) as refused:
            _prune(world, **kwargs)
        assert refused.value.field == field and _exists(world, ToolMutation, cid)


class TestLineageProperty:
    """Whatever the forest of candidates, pruning never breaks a kept row's lineage."""

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.sampled_from(STATUSES), st.booleans(),
                              st.integers(-1, 30), st.integers(-1, 30)),
                    min_size=1, max_size=25))
    def test_kept_rows_keep_every_ancestor(self, world: World,
                                           rows: list[tuple[str, bool, int, int]]) -> None:
        """After pruning: every parent a kept row names still exists, every deleted row was
        old and closed, and every old closed row that was not an ancestor is gone."""
        tenant = new_id()[:12]
        with world.database.session() as s:
            world.database.ensure_tenant(s, tenant)
            world.database.ensure_agent(s, tenant, AGENT)
            tool = world.store.register_tool(s, tenant_id=tenant, name="inc",
                                             code="def inc(x):\n    return x\n",
                                             entrypoint="inc").id
        made: list[tuple[str, str, bool]] = []
        parents: dict[str, tuple[str | None, str | None]] = {}
        for status, old, parent, second in rows:
            pick = [made[i][0] if 0 <= i < len(made) else None for i in (parent, second)]
            cid = _mutation(world, status=status, age=OLD if old else timedelta(days=1),
                            parent=pick[0], second=pick[1], tenant_id=tenant, tool_id=tool)
            made.append((cid, status, old))
            parents[cid] = (pick[0], pick[1])
        _prune(world, tenant_id=tenant)
        with world.database.session() as s:
            left = {m.id: m for m in s.scalars(select(ToolMutation).where(
                ToolMutation.tenant_id == tenant))}
        for row in left.values():
            # Unchanged (a foreign key's SET NULL would hide a deleted parent) and present.
            assert (row.parent_mutation_id, row.second_parent_id) == parents[row.id]
            for ref in parents[row.id]:
                assert ref is None or ref in left
        for cid, status, old in made:
            if cid not in left:
                assert old and status in ("failed", "rejected")
        named = {ref for m in left.values() for ref in (m.parent_mutation_id,
                                                        m.second_parent_id) if ref}
        for cid, status, old in made:
            if old and status in ("failed", "rejected") and cid in left:
                assert cid in named  # kept only because a kept row descends from it


@pytest.mark.postgres
class TestOnPostgres:
    """Rejections, rollbacks and pruning on PostgreSQL (required in CI)."""

    def test_prune_keeps_the_memory_and_the_lineage(self, postgres_database: Any) -> None:
        """A rejected change is pruned but still refused; a kept child keeps its parent."""
        from tests.gates.conftest import FIXED_CODE, build_world

        world = build_world(postgres_database)
        rejected = world.passed_mutation(FIXED_CODE)
        world.review.reject(TENANT, rejected, "bob", "no")
        root = _mutation(world, status="failed", age=OLD)
        child = _mutation(world, status="pending", age=OLD, parent=root)
        world.clock.advance(days=31)
        result = _prune(world)
        assert result.candidates == 1 and not _exists(world, ToolMutation, rejected)
        assert _exists(world, ToolMutation, root) and _exists(world, ToolMutation, child)
        again = world.mutation("def inc(x):\n    return (x + 1)\n")
        world.evaluate(again)
        assert world.status(again) == "failed"
