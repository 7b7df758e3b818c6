"""What review shows of the model behind a candidate, and of the version it would replace."""

from __future__ import annotations

import pytest

from auto_dev._exceptions import NotFoundError
from auto_dev.models import LLMCall
from tests.gates.conftest import FIXED_CODE, TENANT, TOOL_CODE, World

OTHER = "def inc(x):\n    return 1 + x\n"


def _call(world: World, cost: float, tenant_id: str = TENANT) -> str:
    with world.database.session() as s:
        row = LLMCall(tenant_id=tenant_id, model="openai/gpt-x", prompt_tokens=120,
                      completion_tokens=40, cost_usd=cost, latency_s=0.5, status="ok")
        s.add(row)
        s.flush()
        return row.id


class TestCandidateExchange:
    """show() carries the ledger rows and messages of the calls that made a candidate."""

    def test_tool_mutation_names_its_call(self, world: World) -> None:
        call = _call(world, 0.0123)
        cid = world.mutation(operator="llm.diff",
                             details={"llm_call_id": call, "model": "openai/gpt-x",
                                      "llm_cost_usd": 0.5})
        world.evaluate(cid)
        exchange = world.review.show(TENANT, cid).llm
        assert exchange is not None
        assert [c.id for c in exchange.calls] == [call]
        assert exchange.cost_usd == 0.0123  # the ledger, not the engine's estimate
        assert exchange.model == "openai/gpt-x" and exchange.calls[0].prompt_tokens == 120

    def test_offline_candidates_have_none(self, world: World) -> None:
        cid = world.passed_mutation()
        assert world.review.show(TENANT, cid).llm is None

    def test_another_tenants_ledger_row_is_not_shown(self, world: World) -> None:
        with world.database.session() as s:
            world.database.ensure_tenant(s, "other")
        theirs = _call(world, 9.0, tenant_id="other")
        cid = world.mutation(details={"llm_call_id": theirs, "llm_cost_usd": 0.25})
        exchange = world.review.show(TENANT, cid).llm
        assert exchange is not None and exchange.calls == [] and exchange.cost_usd == 0.25

    def test_skill_exchange_messages(self, world: World) -> None:
        call = _call(world, 0.002)
        world.maturity("intern", capability="auto_dev.memento_skills")
        with world.database.session() as s:
            row = world.store.create_skill_candidate(
                s, tenant_id=TENANT, name="inc", code=FIXED_CODE, entrypoint="inc",
                strategy="llm", tool_id=world.tool_id, agent_id=world.agent_id,
                exchange=[{"role": "system", "content": "write a skill"},
                          {"role": "assistant", "content": "def inc(x): ...",
                           "llm_call_id": call},
                          {"role": "sandbox", "content": {"passed": 1}}])
            sid = row.id
        exchange = world.review.show(TENANT, sid).llm
        assert exchange is not None
        assert [m["role"] for m in exchange.messages] == ["system", "assistant", "sandbox"]
        assert [c.id for c in exchange.calls] == [call] and exchange.cost_usd == 0.002


class TestBaseCode:
    """show() and texts() carry the whole text the diff is against, for a side-by-side view."""

    def test_active_version_text(self, world: World) -> None:
        cid = world.passed_mutation()
        detail = world.review.show(TENANT, cid)
        assert detail.base_code == TOOL_CODE and detail.code == FIXED_CODE
        assert detail.active_objectives == {}  # the version was never evaluated

    def test_parent_text_once_promoted(self, world: World) -> None:
        cid = world.passed_mutation()
        world.review.approve(TENANT, cid, "alice", "ok")
        world.review.promote(TENANT, cid, "alice", "go")
        detail = world.review.show(TENANT, cid)
        assert detail.base_code == TOOL_CODE and detail.diff_base.startswith("its parent")

    def test_texts_match_show_and_stay_in_the_tenant(self, world: World) -> None:
        first, second = world.passed_mutation(), world.passed_mutation(OTHER)
        texts = world.review.texts(TENANT, [first, second[:8]])
        for cid in (first, second):
            detail = world.review.show(TENANT, cid)
            assert texts[cid] == (detail.code, detail.base_code)
        with world.database.session() as s:
            world.database.ensure_tenant(s, "other")
        with pytest.raises(NotFoundError):
            world.review.texts("other", [first])
