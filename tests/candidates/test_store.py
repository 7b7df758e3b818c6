"""The candidate store: the one choke point for creating, evaluating, deciding and promoting."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import auto_dev
from auto_dev._exceptions import (
    GateDeniedError,
    IllegalTransitionError,
    NotFoundError,
    ValidationError,
)
from auto_dev.candidates import CandidateStore
from auto_dev.gates import GateDecision, Gatekeeper
from auto_dev.models import (
    AuditEntry,
    Evaluation,
    EventRecord,
    EvolutionRun,
    ReviewDecision,
    SkillCandidate,
    ToolMutation,
    ToolVersion,
    WorkflowVariant,
)
from auto_dev.sandbox.base import CaseResult, CaseStatus, SandboxResult
from tests.gates.conftest import AGENT, FIXED_CODE, TENANT, TOOL_CODE, World

PACKAGE = Path(auto_dev.__file__).resolve().parent


def _run(world: World) -> str:
    """An evolution run row (bulk rejections belong to a run)."""
    with world.database.session() as s:
        run = EvolutionRun(tenant_id=TENANT, engine="alpha_evolver", target="inc",
                           tool_id=world.tool_id, status="completed")
        s.add(run)
        s.flush()
        return run.id


def _count(world: World, model: Any) -> int:
    with world.database.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


class TestCreation:
    """Creating candidates: gated, validated, with lineage and an event."""

    def test_mutation_records_lineage_diff_and_event(self, world: World) -> None:
        """A mutation's parent defaults to the active version; its diff and event are stored."""
        cid = world.mutation()
        with world.database.session() as s:
            row = s.get(ToolMutation, cid)
            active = s.scalars(select(ToolVersion).where(ToolVersion.is_active.is_(True))).one()
            event = s.scalars(select(EventRecord).where(EventRecord.type == "CandidateCreated")
                              ).one()
            assert row is not None and row.status == "pending"
            assert row.parent_version_id == active.id
            assert "-    return x + 2" in row.diff and "+    return x + 1" in row.diff
            assert row.details["capability"] == "auto_dev.alpha_evolver"
            assert event.payload["candidate_id"] == cid and event.payload["actor"] == \
                f"agent:{AGENT}"

    def test_denied_creation_writes_nothing_but_the_audit(self, world: World) -> None:
        """A refused creation stores no candidate, yet the refusal is on record."""
        world.maturity("intern")
        with pytest.raises(GateDeniedError, match="below supervised"):
            world.mutation()
        assert _count(world, ToolMutation) == 0
        with world.database.session() as s:
            denial = s.scalars(select(AuditEntry).where(AuditEntry.allowed.is_(False))).one()
            assert denial.subject_kind == "tool_mutation" and denial.action == \
                "gate.create_candidate"

    @pytest.mark.parametrize(("kwargs", "field"), [
        ({"code": 42}, "code"),
        ({"operator": ""}, "operator"),
        ({"entrypoint": "not valid"}, "entrypoint"),
        ({"objectives": {"pass_rate": float("nan")}}, "objectives.pass_rate"),
        ({"objectives": {"pass_rate": "high"}}, "objectives.pass_rate"),
        ({"island": "north"}, "island"),
    ])
    def test_bad_input_names_the_field(self, world: World, kwargs: dict[str, Any],
                                       field: str) -> None:
        """Malformed candidate fields raise ValidationError naming the field."""
        args: dict[str, Any] = {"code": FIXED_CODE, "operator": "op", **kwargs}
        with pytest.raises(ValidationError) as err, world.database.session() as s:
            world.store.create_tool_mutation(s, tenant_id=TENANT, tool_id=world.tool_id,
                                             agent_id=AGENT, **args)
        assert err.value.field == field

    def test_other_tenants_rows_are_not_found(self, world: World) -> None:
        """A tool or parent of another tenant (or tool) cannot be used."""
        world.configure("beta", enabled=True, alpha_evolver=True, tenant_maturity="supervised")
        with world.database.session() as s:
            with pytest.raises(NotFoundError, match="tool_id"):
                world.store.create_tool_mutation(s, tenant_id="beta", tool_id=world.tool_id,
                                                 code=FIXED_CODE, operator="op")
            with pytest.raises(NotFoundError, match="parent_mutation_id"):
                world.store.create_tool_mutation(s, tenant_id=TENANT, tool_id=world.tool_id,
                                                 code=FIXED_CODE, operator="op", agent_id=AGENT,
                                                 parent_mutation_id="0" * 32)

    def test_skill_and_workflow(self, world: World) -> None:
        """Skills need memento (intern), workflow variants need workflows (supervised)."""
        with world.database.session() as s, pytest.raises(GateDeniedError, match="intern"):
            world.store.create_skill_candidate(s, tenant_id=TENANT, name="dec", agent_id=AGENT,
                                               code="def dec(x):\n    return x - 1\n",
                                               entrypoint="dec", strategy="template")
        world.maturity("intern", "auto_dev.memento_skills")
        world.maturity("supervised", "auto_dev.workflows")
        with world.database.session() as s:
            skill = world.store.create_skill_candidate(
                s, tenant_id=TENANT, name="dec", agent_id=AGENT, entrypoint="dec",
                code="def dec(x):\n    return x - 1\n", strategy="template",
                tests=[{"args": [2], "expected": 1}], source_episode_ids=["e1"])
            flow = world.store.create_workflow_variant(s, tenant_id=TENANT, name="flow",
                                                       definition={"steps": ["a"]},
                                                       agent_id=AGENT)
            with pytest.raises(ValidationError, match="definition"):
                world.store.create_workflow_variant(s, tenant_id=TENANT, name="x",
                                                    definition=["a"], agent_id=AGENT)  # type: ignore[arg-type]
            assert skill.tests == [{"args": [2], "expected": 1}]
            assert flow.status == "pending" and skill.agent_id == world.agent_id


class TestEvaluationAndStatus:
    """Evaluations are linked; statuses move only through legal, gated transitions."""

    def test_sandbox_result_is_recorded(self, world: World) -> None:
        """A SandboxResult becomes an Evaluation linked to the candidate, with its verdict."""
        cid = world.mutation()
        result = SandboxResult("process", (CaseResult(0, CaseStatus.OK, output=2, duration_s=0.01),
                                           CaseResult(1, CaseStatus.OK, output=3)), total=2,
                               duration_s=0.05)
        with world.database.session() as s:
            ev = world.store.record_evaluation(s, tenant_id=TENANT, candidate_id=cid,
                                               result=result, objectives={"pass_rate": 1.0},
                                               parent_objectives={"pass_rate": 0.0},
                                               parent_passed_cases=[], verdict="passed")
            row = s.get(ToolMutation, cid)
            assert row is not None and row.evaluation_id == ev.id and row.status == "passed"
            assert ev.passed == 2 and ev.cases[0]["output"] == 2
            assert row.details["parent_objectives"] == {"pass_rate": 0.0}

    @pytest.mark.parametrize(("code", "why"), [
        ("", "empty or comment-only"),
        ("# just a comment\n", "empty or comment-only"),
        ('"""docstring only"""\npass\n', "empty or comment-only"),
        ("def inc(x)\n    return x\n", "does not parse"),
        ("def inc(x):\n    # a comment changes nothing\n    return x + 2\n", "identical"),
    ])
    def test_trivial_code_never_passes(self, world: World, code: str, why: str) -> None:
        """Empty, comment-only, unparsable or unchanged code can be stored but never pass."""
        cid = world.mutation(code)
        with pytest.raises(ValidationError, match=why):
            world.evaluate(cid, "passed")
        assert world.status(cid) == "pending"
        world.evaluate(cid, "failed")
        assert world.status(cid) == "failed"

    def test_identical_workflow_never_passes(self, world: World) -> None:
        """A workflow variant equal to its parent cannot pass either."""
        world.maturity("supervised", "auto_dev.workflows")
        with world.database.session() as s:
            parent = world.store.create_workflow_variant(s, tenant_id=TENANT, name="f",
                                                         definition={"s": [1]}, agent_id=AGENT)
            child = world.store.create_workflow_variant(s, tenant_id=TENANT, name="f",
                                                        definition={"s": [1]}, agent_id=AGENT,
                                                        parent_id=parent.id)
            with pytest.raises(ValidationError, match="identical"):
                world.store.set_status(s, tenant_id=TENANT, candidate_id=child.id,
                                       status="passed")

    def test_illegal_moves_are_refused(self, world: World) -> None:
        """Promotion and rollback are not set_status targets; lifecycle jumps are refused."""
        cid = world.mutation()
        with world.database.session() as s:
            for status in ("promoted", "rolled_back"):
                with pytest.raises(IllegalTransitionError):
                    world.store.set_status(s, tenant_id=TENANT, candidate_id=cid, status=status)
            with pytest.raises(IllegalTransitionError):
                world.store.set_status(s, tenant_id=TENANT, candidate_id=cid, status="approved",
                                       actor="alice")
            with pytest.raises(ValidationError, match="status"):
                world.store.set_status(s, tenant_id=TENANT, candidate_id=cid, status="great")
            with pytest.raises(ValidationError, match="verdict"):
                world.store.record_evaluation(s, tenant_id=TENANT, candidate_id=cid,
                                              backend="process", verdict="approved")

    def test_evaluation_is_gated(self, world: World) -> None:
        """Turning a capability off stops its candidates' evaluations too."""
        cid = world.mutation()
        world.configure(alpha_evolver=False)
        with pytest.raises(GateDeniedError, match="alpha_evolver"):
            world.evaluate(cid)
        assert _count(world, Evaluation) == 0

    def test_logs_are_capped(self, world: World) -> None:
        """A flood of output is truncated before it reaches the database."""
        cid = world.mutation()
        with world.database.session() as s:
            ev = world.store.record_evaluation(s, tenant_id=TENANT, candidate_id=cid,
                                               backend="process", logs="x" * 1_000_000)
            assert len(ev.logs) == 65_536


class TestDecisionsAndPromotion:
    """Human decisions are recorded; promotion paths are gated."""

    def test_decisions_need_a_named_human_and_reasons(self, world: World) -> None:
        """auto-dev cannot approve; a rejection needs a reason; both are recorded."""
        cid = world.passed_mutation()
        with world.database.session() as s:
            with pytest.raises(ValidationError, match="actor"):
                world.store.set_status(s, tenant_id=TENANT, candidate_id=cid,
                                       status="approved", actor="auto-dev")
            with pytest.raises(ValidationError, match="reason"):
                world.store.set_status(s, tenant_id=TENANT, candidate_id=cid,
                                       status="rejected", actor="bob", reason=" ")
        world.configure(enabled=False)  # rejecting is never refused
        with world.database.session() as s:
            world.store.set_status(s, tenant_id=TENANT, candidate_id=cid, status="rejected",
                                   actor="bob", reason="wrong fix")
            decision = s.scalars(select(ReviewDecision)).one()
            assert (decision.decision, decision.actor, decision.reason) == \
                ("rejected", "bob", "wrong fix")

    def test_human_promotion_needs_approval(self, world: World) -> None:
        """A passed candidate is not promoted by a human until someone approved it."""
        cid = world.passed_mutation()
        with world.database.session() as s, pytest.raises(IllegalTransitionError,
                                                          match="approved"):
            world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="alice")

    def test_auto_promotion_requires_autonomy(self, world: World) -> None:
        """Auto-promotion needs the toggle and an autonomous agent, then records auto-dev."""
        cid = world.mutation()
        world.evaluate(cid, objectives={"pass_rate": 1.0},
                       parent_objectives={"pass_rate": 0.5}, parent_passed_cases=[0])

        def auto() -> Any:
            with world.database.session() as s:
                return world.store.promote(s, tenant_id=TENANT, candidate_id=cid,
                                           actor="auto-dev", auto=True)

        with pytest.raises(GateDeniedError, match="auto_promotion"):
            auto()
        world.configure(auto_promotion=True)
        with pytest.raises(GateDeniedError, match="below autonomous"):
            auto()
        world.maturity("autonomous", "auto_dev.auto_promotion")
        result = auto()
        assert result.auto and result.version == 2
        with world.database.session() as s:
            decisions = [(d.decision, d.actor) for d in s.scalars(
                select(ReviewDecision).order_by(ReviewDecision.created_at))]
        assert decisions == [("approved", "auto-dev"), ("promoted", "auto-dev")]

    def test_auto_promotion_refuses_a_worse_candidate(self, world: World) -> None:
        """A candidate not better than its parent is not auto-promoted, and that is audited."""
        world.configure(auto_promotion=True)
        world.maturity("autonomous", "auto_dev.auto_promotion")
        cid = world.mutation()
        world.evaluate(cid, objectives={"pass_rate": 0.5},
                       parent_objectives={"pass_rate": 1.0})
        with pytest.raises(GateDeniedError, match="auto-promotion refused"), \
                world.database.session() as s:
            world.store.promote(s, tenant_id=TENANT, candidate_id=cid, actor="auto-dev",
                                auto=True)
        assert world.status(cid) == "passed"
        with world.database.session() as s:
            assert s.scalars(select(AuditEntry).where(
                AuditEntry.action == "gate.auto_promote")).one().allowed is False

    def test_daily_promotion_limit(self, world: World) -> None:
        """The tenant's daily promotion limit applies to human promotions too."""
        world.configure(daily_promotions_per_tenant=1)
        first = world.passed_mutation()
        second = world.passed_mutation("def inc(x):\n    return 1 + x\n")
        for cid in (first, second):
            world.review.approve(TENANT, cid, "alice", "ok")
        world.review.promote(TENANT, first, "alice", "ship")
        with pytest.raises(GateDeniedError, match="daily promotion limit"):
            world.review.promote(TENANT, second, "alice", "ship")


class _DenyAll(Gatekeeper):
    """A gatekeeper that refuses everything (and counts what it was asked)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, str]] = []

    def authorize(self, session: Any, **kw: Any) -> GateDecision:  # type: ignore[override]
        self.asked.append((kw["capability"], kw["action"]))
        return GateDecision(False, "deny-all", kw["capability"], kw["action"], kw["tenant_id"])


_CANDIDATE_MODELS = {"ToolMutation", "SkillCandidate", "WorkflowVariant", "ToolVersion",
                     "WorkflowVersion"}
_GUARDED_ATTRS = {"is_active", "status", "tool_id", "evaluation_id"}
_CANDIDATE_STATUS_WORDS = {"evaluating", "passed", "approved", "rejected", "promoted",
                           "rolled_back"}
_RAW_SQL = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+\"?(tool_versions|"
                      r"tool_mutations|skill_candidates|workflow_variants|workflow_versions)\b",
                      re.IGNORECASE)


def _writes(tree: ast.AST, text: str) -> list[str]:
    """Every construct in a module that could create, change or activate a candidate or a
    tool version: constructor calls, insert/update/delete statements, transition() calls,
    assignments of candidate statuses or is_active, setattr on them, raw SQL."""
    found: list[str] = []

    def name_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = name_of(node.func)
            if callee in _CANDIDATE_MODELS:
                found.append(f"line {node.lineno}: {callee}(...)")
            elif callee in {"insert", "update", "delete", "bulk_insert_mappings",
                            "bulk_update_mappings"} and node.args and \
                    name_of(node.args[0]) in _CANDIDATE_MODELS:
                found.append(f"line {node.lineno}: {callee}({name_of(node.args[0])})")
            elif callee == "transition":
                found.append(f"line {node.lineno}: transition(...)")
            elif callee == "setattr" and len(node.args) >= 2 and \
                    isinstance(node.args[1], ast.Constant) and node.args[1].value in {
                        "is_active", "status"}:
                found.append(f"line {node.lineno}: setattr(..., {node.args[1].value!r})")
        targets: list[ast.expr] = []
        value: ast.AST | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets, value = [node.target], node.value
        for target in targets:
            if not isinstance(target, ast.Attribute):
                continue
            if target.attr == "is_active":
                found.append(f"line {node.lineno}: .is_active = ...")
            elif target.attr == "status" and value is not None and _is_candidate_status(value):
                found.append(f"line {node.lineno}: .status = {ast.unparse(value)}")
    for match in _RAW_SQL.finditer(text):
        found.append(f"raw SQL {match.group(0)!r}")
    return found


def _is_candidate_status(value: ast.AST) -> bool:
    if isinstance(value, ast.Constant):
        return value.value in _CANDIDATE_STATUS_WORDS
    return "CandidateStatus" in ast.unparse(value)


class TestChokePoint:
    """Every candidate-creating and promoting path goes through the store and its gate."""

    def test_scanner_detects_every_pattern(self) -> None:
        """The scanner itself finds each kind of write (so the scan below can fail)."""
        snippet = (
            "ToolMutation(code='x')\nmodels.ToolVersion(version=2)\nsession.execute("
            "insert(SkillCandidate))\ntransition(c, 'passed')\nv.is_active = True\n"
            "c.status = 'promoted'\nc.status = CandidateStatus.APPROVED\n"
            "setattr(v, 'is_active', False)\nq = 'UPDATE tool_versions SET is_active = 1'\n"
            "run.status = 'failed'\n"
        )
        found = _writes(ast.parse(snippet), snippet)
        assert len(found) == 9, found  # run.status = 'failed' is not a candidate status

    def test_no_module_outside_the_store_writes_candidates(self) -> None:
        """Scanning the whole package: only auto_dev/candidates/ (and the transition function's
        own module) construct, activate or move candidates and tool versions."""
        allowed_dirs = {PACKAGE / "candidates"}
        allowed_files = {PACKAGE / "models" / "candidates.py"}
        offenders: dict[str, list[str]] = {}
        scanned = 0
        for path in sorted(PACKAGE.rglob("*.py")):
            if path in allowed_files or any(d in path.parents for d in allowed_dirs):
                continue
            text = path.read_text(encoding="utf-8")
            scanned += 1
            hits = _writes(ast.parse(text), text)
            # Reading models (select(ToolVersion)) is fine; only writes are listed.
            if hits:
                offenders[str(path.relative_to(PACKAGE))] = hits
        assert scanned > 20
        assert offenders == {}, f"candidate writes outside the choke point: {offenders}"

    def test_store_paths_are_enumerated(self) -> None:
        """Inside candidates/, the functions that write candidates or versions are exactly the
        known paths, each of which the dynamic test below drives through a refusing gate."""
        writers: set[str] = set()
        for path in sorted((PACKAGE / "candidates").glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in ast.walk(tree):
                if isinstance(fn, ast.FunctionDef) and _writes(fn, ""):
                    writers.add(f"{path.stem}.{fn.name}")
        assert writers == {
            "_creation.create_tool_mutation", "_creation.create_skill_candidate",
            "_creation.create_workflow_variant", "store._move",
            "promotion.human_decision", "promotion.activate_new_version",
            "promotion.promote", "promotion.rollback_tool",
            "_bulk.record_rejected_mutations",
            # Workflow versions: activated by registration and promotion, re-activated by a
            # rollback (never refused, always audited), like tool versions.
            "workflow_versions.activate_workflow_version",
            "workflow_versions.rollback_workflow_version",
            # Rejecting the identical candidates of a rejected change: like rejecting and
            # rolling back, never refused (it only makes things safer), always recorded.
            "rejections._close_identical",
        }

    def test_every_store_path_consults_the_gate(self, world: World) -> None:
        """With a gatekeeper that refuses everything, every creating, evaluating, deciding and
        promoting path raises GateDeniedError and writes nothing."""
        cid = world.passed_mutation()
        approved = world.passed_mutation("def inc(x):\n    return 1 + x\n")
        world.review.approve(TENANT, approved, "alice", "ok")
        deny = _DenyAll()
        store = CandidateStore(world.database, deny)
        calls = {
            "create_tool_mutation": lambda s: store.create_tool_mutation(
                s, tenant_id=TENANT, tool_id=world.tool_id, code=FIXED_CODE, operator="op",
                agent_id=AGENT),
            "create_skill_candidate": lambda s: store.create_skill_candidate(
                s, tenant_id=TENANT, name="n", code=FIXED_CODE, entrypoint="inc",
                strategy="t"),
            "create_workflow_variant": lambda s: store.create_workflow_variant(
                s, tenant_id=TENANT, name="w", definition={"a": 1}),
            "record_evaluation": lambda s: store.record_evaluation(
                s, tenant_id=TENANT, candidate_id=cid, backend="process"),
            "set_status(failed)": lambda s: store.set_status(
                s, tenant_id=TENANT, candidate_id=cid, status="failed"),
            "set_status(approved)": lambda s: store.set_status(
                s, tenant_id=TENANT, candidate_id=cid, status="approved", actor="alice"),
            "promote(human)": lambda s: store.promote(
                s, tenant_id=TENANT, candidate_id=approved, actor="alice"),
            "promote(auto)": lambda s: store.promote(
                s, tenant_id=TENANT, candidate_id=cid, actor="auto-dev", auto=True),
            "record_rejected_mutations": lambda s: store.record_rejected_mutations(
                s, decision=deny.authorize(s, tenant_id=TENANT, agent_id=AGENT,
                                           capability="auto_dev.alpha_evolver",
                                           action="run_cycle"),
                tenant_id=TENANT, tool_id=world.tool_id, run_id="r", rows=[
                    {"code": FIXED_CODE, "operator": "op"}],
                capability="auto_dev.alpha_evolver"),
        }
        counts = {m: _count(world, m) for m in (ToolMutation, SkillCandidate, WorkflowVariant,
                                                 ToolVersion, Evaluation, ReviewDecision)}
        for name, call in calls.items():
            before = len(deny.asked)
            with pytest.raises(GateDeniedError, match="deny-all"), \
                    world.database.session() as s:
                call(s)
            assert len(deny.asked) > before, name
        assert {m: _count(world, m) for m in counts} == counts
        assert world.status(cid) == "passed" and world.status(approved) == "approved"

    def test_bulk_rejections_need_a_matching_run_decision(self, world: World) -> None:
        """A run's rejected mutations are stored only under an allowing run_cycle decision for
        the same tenant and capability, and only ever as failed."""
        run_id = _run(world)
        rows = [{"code": FIXED_CODE, "operator": "op", "generation": 1}]
        with world.database.session() as s:
            allowed = world.gatekeeper.authorize(s, tenant_id=TENANT, agent_id=AGENT,
                                                 capability="auto_dev.alpha_evolver",
                                                 action="run_cycle")
            other_action = world.gatekeeper.authorize(s, tenant_id=TENANT, agent_id=AGENT,
                                                      capability="auto_dev.alpha_evolver",
                                                      action="use")
        kw: dict[str, Any] = {"tenant_id": TENANT, "tool_id": world.tool_id, "run_id": run_id,
                              "capability": "auto_dev.alpha_evolver", "rows": rows}
        with world.database.session() as s:
            with pytest.raises(GateDeniedError, match="does not cover"):
                world.store.record_rejected_mutations(s, decision=other_action, **kw)
            with pytest.raises(GateDeniedError, match=r"not 'auto_dev\.memento_skills'"):
                world.store.record_rejected_mutations(
                    s, decision=allowed, **{**kw, "capability": "auto_dev.memento_skills"})
            with pytest.raises(NotFoundError):
                world.store.record_rejected_mutations(s, decision=allowed,
                                                      **{**kw, "tool_id": "0" * 32})
            [cid] = world.store.record_rejected_mutations(s, decision=allowed, **kw)
        assert world.status(cid) == "failed"
        with world.database.session() as s, pytest.raises(IllegalTransitionError):
            world.store.set_status(s, tenant_id=TENANT, candidate_id=cid, status="passed")

    def test_register_tool_is_the_only_ungated_activation(self, world: World) -> None:
        """Registering a platform tool activates its first version without a capability
        (audited); it never activates another one: new code is refused."""
        with world.database.session() as s:
            same = world.store.register_tool(s, tenant_id=TENANT, name="inc", code=TOOL_CODE,
                                             entrypoint="inc")
            with pytest.raises(ValidationError, match="propose_tool_change"):
                world.store.register_tool(s, tenant_id=TENANT, name="inc", code=FIXED_CODE,
                                          entrypoint="inc", actor="platform")
            versions = s.scalars(select(ToolVersion).where(ToolVersion.tool_id == same.id)
                                 .order_by(ToolVersion.version)).all()
            assert [(v.version, v.is_active, v.source) for v in versions] == [(1, True, "seed")]
            audit = s.scalars(select(AuditEntry).where(
                AuditEntry.action == "tool.registered")).one()
            assert audit.subject_id == same.id
