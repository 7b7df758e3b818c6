"""Tests for the offline workflow operators: each proposes sensible edits, and only where they
apply, never touching the input document and keeping step ids unique."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auto_dev.workflows import (
    canonical_json,
    find_step,
    step_kind,
    validate_workflow,
    walk_steps,
)
from auto_dev.workflows.diff import structural_diff
from auto_dev.workflows.operators import (
    OFFLINE_OPERATORS,
    AddRetry,
    ChangeConstant,
    DeleteStep,
    DuplicateStep,
    FlipComparison,
    MoveStep,
    RemoveRetry,
    RepointArgument,
    RewriteComparisonField,
    SwapBranches,
    SwitchTool,
    WidenRetry,
    WorkflowMutationContext,
    WorkflowOperator,
    WorkflowProposal,
    WrapInCatch,
    propose_offline,
)
from tests.workflows._documents import (
    CANCEL_FAILED,
    TOOLS,
    failures_for,
    refund,
    workflow_documents,
)

ONLY_SETS = {"name": "w", "steps": [{"id": "a", "set": {"x": "${input.x}"}},
                                    {"id": "b", "fail": "no"}]}
SINGLE = {"name": "w", "steps": [{"id": "only", "tool": "get_order", "args": {}}]}


def _context(seed: int = 0, failures: Any = (), tools: Any = TOOLS,
             state_paths: Any = ()) -> WorkflowMutationContext:
    return WorkflowMutationContext(tools=tools, failures=failures, rng=random.Random(seed),
                                   state_paths=state_paths)


def _propose(op: WorkflowOperator, doc: dict[str, Any], **kw: Any) -> list[WorkflowProposal]:
    """Proposals of ``op``, checking what every proposal must satisfy."""
    before = copy.deepcopy(doc)
    proposals = op.propose(doc, _context(**kw))
    assert doc == before, "the input document was mutated"
    texts = set()
    for proposal in proposals:
        assert proposal.operator == op.name
        ids = [loc.step.get("id") for loc in walk_steps(proposal.definition)]
        assert len(ids) == len(set(ids)), f"duplicate ids in {proposal.note}"
        assert not structural_diff(doc, proposal.definition).is_empty
        validate_workflow(proposal.definition)
        texts.add(canonical_json(proposal.definition))
    assert len(texts) == len(proposals)
    return proposals


def _all(op: WorkflowOperator) -> WorkflowOperator:
    """``op`` allowed to return every edit it can make (to check what it considers)."""
    op.max_proposals = 1000
    return op


def _step(proposal: WorkflowProposal, step_id: str) -> dict[str, Any]:
    location = find_step(proposal.definition, step_id)
    assert location is not None
    return location.step


class TestRetryOperators:
    """Retries are added to fallible steps, widened, or removed."""

    def test_add_retry_targets_the_failing_step_first(self) -> None:
        """With a failed run naming `cancel`, the first retry added is cancel's."""
        proposals = _propose(AddRetry(), refund(), failures=[CANCEL_FAILED])
        assert proposals[0].step_id == "cancel"
        assert _step(proposals[0], "cancel")["retry"]["on"] == ["error", "timeout"]
        assert all(p.step_id not in ("order", "fallback") for p in proposals)

    def test_add_retry_does_not_apply(self) -> None:
        """Set and fail steps, and steps that already retry, get no retry."""
        assert _propose(AddRetry(), ONLY_SETS) == []
        retried = {"name": "w", "steps": [{"id": "t", "tool": "x", "retry": {"max_attempts": 2}}]}
        assert _propose(AddRetry(), retried) == []

    def test_widen_retry(self) -> None:
        """A retry grows its attempts or learns to retry timeouts too."""
        proposals = _propose(WidenRetry(), refund())
        retries = [_step(p, "order")["retry"] for p in proposals]
        assert {"error", "timeout"} <= set().union(*(set(r["on"]) for r in retries))
        assert any(r["max_attempts"] > 3 for r in retries)
        assert all(r["max_attempts"] <= 10 for r in retries)

    def test_widen_retry_does_not_apply(self) -> None:
        """No retry, or a retry already at its widest, leaves nothing to widen."""
        assert _propose(WidenRetry(), SINGLE) == []
        widest = {"name": "w", "steps": [{"id": "t", "tool": "x", "retry": {
            "max_attempts": 10, "on": ["error", "timeout"]}}]}
        assert _propose(WidenRetry(), widest) == []

    def test_remove_retry(self) -> None:
        """The one retry of the example is removed, and nothing when there is none."""
        [proposal] = _propose(RemoveRetry(), refund())
        assert "retry" not in _step(proposal, "order")
        assert _propose(RemoveRetry(), SINGLE) == []


class TestWrapInCatch:
    """A fallible step gets a catch: a fixed fallback or one more plain run."""

    def test_both_forms_for_the_failing_step(self) -> None:
        """The failing step gets a set fallback and a re-run with a fresh id."""
        proposals = _propose(WrapInCatch(), refund(), failures=[CANCEL_FAILED])
        catches = [_step(p, "cancel")["catch"] for p in proposals if p.step_id == "cancel"]
        kinds = sorted(step_kind(c[0]) for c in catches)
        assert kinds == ["set", "tool"]
        rerun = next(c[0] for c in catches if step_kind(c[0]) == "tool")
        assert rerun["id"] != "cancel" and rerun["tool"] == "cancel_order"
        assert "retry" not in rerun and "catch" not in rerun

    def test_does_not_apply(self) -> None:
        """Set and fail steps, and steps that already catch, get no catch."""
        assert _propose(WrapInCatch(), ONLY_SETS) == []
        caught = {"name": "w", "steps": [{"id": "t", "tool": "x",
                                          "catch": [{"id": "c", "fail": "x"}]}]}
        assert _propose(WrapInCatch(), caught) == []


class TestStepPlacement:
    """Steps are deleted, duplicated with fresh ids, or moved."""

    def test_delete_never_empties_a_block(self) -> None:
        """Deleting the only step of a catch drops the catch; a lone branch step stays."""
        deleted = {p.step_id for p in _propose(_all(DeleteStep()), refund())}
        assert deleted == {"order", "route", "notes", "reply", "fallback"}
        [gone] = [p for p in _propose(_all(DeleteStep()), refund()) if p.step_id == "fallback"]
        assert "catch" not in _step(gone, "reply")
        assert _propose(DeleteStep(), SINGLE) == []

    def test_duplicate_renumbers_nested_ids(self) -> None:
        """A duplicated switch gets fresh ids for itself and every step inside it."""
        [proposal] = [p for p in _propose(_all(DuplicateStep()), refund())
                      if p.step_id == "route"]
        steps = proposal.definition["steps"]
        assert [s["id"] for s in steps] == ["order", "route", "route_2", "notes", "reply"]
        ids = [loc.step["id"] for loc in walk_steps(proposal.definition)]
        assert "ret_2" in ids and "cancel_2" in ids
        assert _propose(DuplicateStep(), {"name": "w", "steps": []}) == []

    def test_move_within_and_out_of_a_block(self) -> None:
        """A step moves to another position, or out of its block after its holder."""
        doc = {"name": "w", "steps": [
            {"id": "a", "tool": "x"},
            {"id": "sw", "switch": [{"when": "input.a", "steps": [
                {"id": "in1", "fail": "1"}, {"id": "in2", "fail": "2"}]}]}]}
        notes = {p.note: p for p in _propose(_all(MoveStep()), doc)}
        hoisted = notes["move step in2 out of its block"].definition
        assert [s["id"] for s in hoisted["steps"]] == ["a", "sw", "in2"]
        swapped = notes["move step a to position 2 of its block"].definition
        assert [s["id"] for s in swapped["steps"]] == ["sw", "a"]
        assert _propose(MoveStep(), SINGLE) == []

    def test_swap_branches(self) -> None:
        """Two when-branches swap; a switch with one when-branch and otherwise has none."""
        doc = {"name": "w", "steps": [{"id": "sw", "switch": [
            {"when": "input.a", "steps": [{"id": "a", "fail": "a"}]},
            {"when": "input.b", "steps": [{"id": "b", "fail": "b"}]},
            {"otherwise": [{"id": "c", "fail": "c"}]}]}]}
        [proposal] = _propose(SwapBranches(), doc)
        whens = [b.get("when") for b in proposal.definition["steps"][0]["switch"]]
        assert whens == ["input.b", "input.a", None]
        assert _propose(SwapBranches(), refund()) == []


class TestValueOperators:
    """Tools, argument paths, conditions and constants are rewritten sensibly."""

    def test_switch_tool_prefers_similar_names(self) -> None:
        """get_order becomes get_order_v2 before an unrelated tool; only registered tools."""
        doc = copy.deepcopy(SINGLE)
        proposals = _propose(SwitchTool(), doc)
        assert proposals[0].definition["steps"][0]["tool"] == "get_order_v2"
        assert {p.definition["steps"][0]["tool"] for p in proposals} <= set(TOOLS) - {"get_order"}
        assert _propose(SwitchTool(), doc, tools=["get_order"]) == []

    def test_repoint_uses_visible_paths_only(self) -> None:
        """cancel's argument may read order's fields from the trace, never a sibling branch."""
        proposals = _propose(_all(RepointArgument()), refund(), failures=[CANCEL_FAILED])
        new_values = {_step(p, "cancel")["args"]["order_id"] for p in proposals
                      if p.step_id == "cancel"}
        assert "${steps.order.id}" in new_values
        assert "${steps.ret}" not in new_values and "${steps.reply}" not in new_values
        assert proposals[0].step_id == "cancel"
        assert _propose(RepointArgument(), {"name": "w", "steps": [
            {"id": "t", "tool": "x", "args": {"a": 1}}]}) == []

    def test_repoint_inside_a_map_uses_item_fields(self) -> None:
        """A step in a map body may read the fields its items had in the trace."""
        body = [{"id": "t", "tool": "x", "args": {"v": "${it.title}"}}]
        doc = {"name": "w", "steps": [{"id": "m", "map": {"over": "input.items", "as": "it",
                                                          "steps": body}}]}
        run = {"ok": False, "error": "boom", "error_step": "t", "trace": [
            {"id": "m", "kind": "map", "input": [], "output": None, "error": "boom",
             "children": [{"id": "m[0]", "kind": "item", "input": {"title": "a", "name": "b"},
                           "output": None, "error": "boom", "children": [
                               {"id": "t", "kind": "tool", "input": None, "output": None,
                                "error": "boom", "children": []}]}]}]}
        values = {p.definition["steps"][0]["map"]["steps"][0]["args"]["v"]
                  for p in _propose(_all(RepointArgument()), doc, failures=[run])}
        assert {"${it.name}", "${it}"} <= values

    def test_rewrite_comparison_field_from_traces(self) -> None:
        """The switch on `status` is offered the sibling field `state` the trace showed."""
        proposals = _propose(RewriteComparisonField(), refund(), failures=[CANCEL_FAILED])
        whens = {p.definition["steps"][1]["switch"][0]["when"] for p in proposals}
        assert "steps.order.state == 'shipped'" in whens
        assert _propose(RewriteComparisonField(), refund()) == []

    def test_flip_comparison(self) -> None:
        """`==` becomes `!=`, and a whole condition may be negated (or un-negated)."""
        whens = {p.definition["steps"][1]["switch"][0]["when"]
                 for p in _propose(FlipComparison(), refund())}
        assert whens == {"steps.order.status != 'shipped'", "!(steps.order.status == 'shipped')"}
        negated = {"name": "w", "steps": [{"id": "t", "tool": "x", "when": "!(input.a < `2`)"}]}
        whens = {p.definition["steps"][0]["when"] for p in _propose(FlipComparison(), negated)}
        assert whens == {"!(input.a >= `2`)", "input.a < `2`"}
        assert _propose(FlipComparison(), SINGLE) == []

    def test_change_constant_prefers_observed_values(self) -> None:
        """The compared literal becomes a value the field really held in the trace."""
        proposals = _propose(ChangeConstant(), refund(), failures=[CANCEL_FAILED])
        whens = [p.definition["steps"][1]["switch"][0]["when"] for p in proposals
                 if p.step_id == "route"]
        assert whens[0] == "steps.order.status == 'open'"

    def test_change_constant_numbers_and_timeouts(self) -> None:
        """Numbers in arguments and conditions, and timeouts, are nudged."""
        doc = {"name": "w", "steps": [{"id": "t", "tool": "x", "args": {"n": 3},
                                       "when": "input.k > `2`", "timeout_s": 4}]}
        steps = [p.definition["steps"][0] for p in _propose(_all(ChangeConstant()), doc)]
        assert {s["args"]["n"] for s in steps} >= {2, 4, 6, 0}
        assert {s["when"] for s in steps} >= {"input.k > `3`", "input.k > `1`"}
        assert {s["timeout_s"] for s in steps} >= {8, 2}
        assert _propose(ChangeConstant(), {"name": "w", "steps": [
            {"id": "t", "tool": "x", "args": {"a": "${input.a}"}}]}) == []


class TestDeterminismAndMixing:
    """A seed fixes the proposals; propose_offline mixes operators without repeats."""

    def test_same_seed_same_proposals(self) -> None:
        """Two runs with the same seed propose the same documents in the same order."""
        for op in OFFLINE_OPERATORS:
            a = op.propose(refund(), _context(seed=5, failures=[CANCEL_FAILED]))
            b = op.propose(refund(), _context(seed=5, failures=[CANCEL_FAILED]))
            assert [p.definition for p in a] == [p.definition for p in b]

    def test_propose_offline_mixes_and_respects_limit(self) -> None:
        """Failing-step edits come first, several operators appear, no duplicate documents."""
        doc = refund()
        proposals = propose_offline(doc, _context(seed=1, failures=[CANCEL_FAILED]), limit=15)
        assert len(proposals) == 15
        assert len({canonical_json(p.definition) for p in proposals}) == 15
        assert len({p.operator for p in proposals}) >= 8
        focused = [p.step_id in ("cancel", "route") for p in proposals]
        assert focused == sorted(focused, reverse=True) and focused[0]
        assert doc == refund()
        assert propose_offline(doc, _context(), limit=0) == []

    @pytest.mark.parametrize("op", [op for op in OFFLINE_OPERATORS if op.name != "swap_branches"],
                             ids=lambda op: op.name)
    def test_every_operator_applies_to_the_example(self, op: WorkflowOperator) -> None:
        """Each offline operator finds something to do on the issue's example (with a trace);
        swap_branches needs two when-branches, which the example lacks (tested above)."""
        assert _propose(op, refund(), failures=[CANCEL_FAILED])


def _well_formed(doc: dict[str, Any]) -> bool:
    """Every step is a dict with an id and a kind, found by the shared walker."""
    return all(isinstance(loc.step.get("id"), str) and step_kind(loc.step)
               for loc in walk_steps(doc))


class TestOperatorProperties:
    """For random documents and operators, proposals are distinct, well-formed edits."""

    @settings(max_examples=60, deadline=None)
    @given(workflow_documents(), st.sampled_from(OFFLINE_OPERATORS),
           st.integers(0, 2**16), st.lists(st.integers(0, 50), max_size=3))
    def test_proposals_are_real_edits(self, doc: dict[str, Any], op: WorkflowOperator,
                                      seed: int, picks: list[int]) -> None:
        """The parent never changes; each proposal differs, keeps ids unique and stays a valid
        workflow."""
        before = copy.deepcopy(doc)
        validate_workflow(doc, tools=TOOLS)
        assert structural_diff(doc, doc).is_empty
        failures = failures_for(doc, picks) if picks else []
        proposals = op.propose(doc, _context(seed=seed, failures=failures,
                                             state_paths=["steps.s0.state"]))
        assert doc == before
        assert len(proposals) <= op.max_proposals
        for proposal in proposals:
            assert not structural_diff(doc, proposal.definition).is_empty
            ids = [loc.step["id"] for loc in walk_steps(proposal.definition)]
            assert len(ids) == len(set(ids))
            assert _well_formed(proposal.definition)
            validate_workflow(proposal.definition, tools=TOOLS)
            proposal.definition["steps"].clear()  # no structure shared with the parent
            assert doc == before

    @settings(max_examples=30, deadline=None)
    @given(workflow_documents(), st.integers(0, 2**16))
    def test_propose_offline_is_deterministic(self, doc: dict[str, Any], seed: int) -> None:
        """The same seed gives the same mixed proposals, all distinct from the parent."""
        a = propose_offline(doc, _context(seed=seed), limit=8)
        b = propose_offline(doc, _context(seed=seed), limit=8)
        assert [p.definition for p in a] == [p.definition for p in b]
        assert canonical_json(doc) not in {canonical_json(p.definition) for p in a}


def _support_tools() -> Any:
    from tests.workflows._support import FakeTools

    def get_order(order_id: int) -> dict[str, Any]:
        return {"id": order_id, "status": "open", "state": "shipped"}

    def start_return(order: dict[str, Any]) -> str:
        return f"return {order['id']}"

    def cancel_order(order_id: int) -> str:
        raise ValueError("cannot cancel a shipped order")

    def flaky(order_id: int, rng: random.Random) -> str:
        if rng.random() < 0.5:
            raise RuntimeError("flaky failure")
        return "ok"

    return FakeTools(get_order=get_order, get_order_v2=get_order, start_return=start_return,
                     cancel_order=cancel_order, flaky=flaky)


class TestRepairsRealRuns:
    """Fed a real failed run, the offline operators propose a variant that runs successfully."""

    @pytest.mark.parametrize("broken, repair", [
        ({"name": "w", "input": {"required": ["order_id"]}, "steps": [
            {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"}},
            {"id": "route", "switch": [
                {"when": "steps.order.status == 'shipped'", "steps": [
                    {"id": "ret", "tool": "start_return", "args": {"order": "${steps.order}"}}]},
                {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                                "args": {"order_id": "${input.order_id}"}}]}]}],
          "output": "steps.route"}, "rewrite_comparison_field"),
        ({"name": "w", "input": {"required": ["order_id"]}, "steps": [
            {"id": "call", "tool": "flaky", "args": {"order_id": "${input.order_id}"}}],
          "output": "steps.call"}, "add_retry"),
    ], ids=["wrong_field", "missing_retry"])
    async def test_a_proposal_fixes_the_run(self, broken: dict[str, Any], repair: str) -> None:
        """The failing run's trace leads the mix to a variant that succeeds on the same seed."""
        from auto_dev.workflows import WorkflowInterpreter

        interpreter = WorkflowInterpreter(_support_tools())
        failed = await interpreter.run(broken, {"order_id": 7}, seed=1)
        assert not failed.ok
        context = WorkflowMutationContext(tools=[*TOOLS, "flaky"], failures=[failed.to_dict()],
                                          rng=random.Random(0))
        proposals = propose_offline(broken, context, limit=12)
        fixed = [p for p in proposals
                 if (await interpreter.run(p.definition, {"order_id": 7}, seed=1)).ok]
        assert repair in {p.operator for p in fixed}
