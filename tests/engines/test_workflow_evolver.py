"""WorkflowEvolver: failing runs of a registered workflow become a reviewed, promotable repair."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from auto_dev._exceptions import ValidationError
from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.engines.workflow_evolver import MODEL_STRATEGY, OFFLINE_STRATEGY, WorkflowEvolver
from auto_dev.events import TaskFailed
from auto_dev.models import EvolutionRun, WorkflowVariant
from auto_dev.queries import TenantView
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.service import AutoDev
from auto_dev.testing import FakeLLM, OpenAICompatibleServer, ServerReply

ORDERS = {"A1": ("shipped", "paid"), "A2": ("processing", "paid"),
          "A3": ("shipped", "pending"), "A4": ("processing", "pending")}


def order_tools(orders: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The routing workflow's tools (tool name -> code), over ``orders``."""
    records = {k: {"id": k, "status": s, "payment_status": p} for k, (s, p) in orders.items()}
    return {
        "get_order": f"def get_order(order_id):\n    return {records!r}[order_id]\n",
        "start_return": ("def start_return(order):\n    return {'action': 'return', "
                         "'order_id': order['id'], 'label': 'RMA-' + order['id']}\n"),
        "cancel_order": ("def cancel_order(order_id):\n"
                         "    return {'action': 'cancel', 'order_id': order_id}\n"),
    }


BROKEN: dict[str, Any] = {
    "name": "refund_support", "input": {"required": ["order_id"]},
    "steps": [
        {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"}},
        {"id": "route", "switch": [
            {"when": "steps.order.payment_status == 'shipped'",
             "steps": [{"id": "ret", "tool": "start_return", "args": {"order": "${steps.order}"}}]},
            {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                            "args": {"order_id": "${input.order_id}"}}]}]}],
    "output": "steps.route"}


def expected(order_id: str, orders: dict[str, tuple[str, str]] = ORDERS) -> dict[str, Any]:
    if orders[order_id][0] == "shipped":
        return {"action": "return", "order_id": order_id, "label": f"RMA-{order_id}"}
    return {"action": "cancel", "order_id": order_id}


def setup(autodev: AutoDev, *, tenant: str = "t1", maturity: str = "supervised",
          workflows: bool = True, orders: dict[str, tuple[str, str]] = ORDERS,
          doc: dict[str, Any] = BROKEN) -> None:
    autodev.configure_tenant(tenant, enabled=True, workflows=workflows)
    for name, code in order_tools(orders).items():
        autodev.register_tool(name, code, name, tenant_id=tenant)
    autodev.register_workflow(doc, actor="alice", tenant_id=tenant)
    autodev.set_maturity("support-bot", "auto_dev.workflows", maturity, tenant_id=tenant)


async def record_failures(autodev: AutoDev, *, tenant: str = "t1",
                          order_ids: tuple[str, ...] = ("A1", "A3")) -> None:
    """Shipped orders were cancelled: failing runs with their expected output."""
    for order_id in order_ids:
        await autodev.record_episode(
            agent="support-bot", task=f"refund {order_id}", success=False,
            workflow="refund_support", inputs={"order_id": order_id},
            expected=expected(order_id), output={"action": "cancel", "order_id": order_id},
            error_trace="the customer got a cancellation instead of a return label",
            tenant_id=tenant)
    # Runs that went right are tasks too: a repair must keep them right.
    for order_id in ("A2", "A4"):
        autodev.add_workflow_task("refund_support", {"order_id": order_id}, expected(order_id),
                                  tenant_id=tenant)


def variants(autodev: AutoDev, tenant: str = "t1") -> list[WorkflowVariant]:
    with autodev.database.session() as session:
        rows = session.scalars(select(WorkflowVariant).where(
            WorkflowVariant.tenant_id == tenant)).all()
        session.expunge_all()
        return list(rows)


class TestUserStory:
    """Register, record failing runs, drain, review the structural diff, promote, roll back."""

    async def test_failing_runs_end_in_a_promoted_repair_that_rolls_back(
            self, autodev: AutoDev) -> None:
        """The queued cycle offers a variant that fixes the branch; promotion makes it v2 and
        rollback restores v1."""
        setup(autodev)
        await record_failures(autodev)
        await autodev.drain()
        [pending] = autodev.review.list_pending("t1")
        assert pending.target == "refund_support" and pending.kind == "workflow_variant"
        detail = autodev.review.show("t1", pending.id)
        assert "changed step route" in detail.diff
        assert "steps.order.status == 'shipped'" in detail.diff
        # Per task: its input, what was expected, and the variant's result; the parent's
        # vector (the active version) next to the variant's.
        assert [c.status for c in detail.cases] == ["ok"] * 4
        assert {c.inputs["order_id"] for c in detail.cases if c.inputs} == set(ORDERS)
        assert all(c.expected == c.output for c in detail.cases)
        assert detail.evaluation is not None and detail.evaluation["backend"] == "process"
        rates = {row.name: (row.candidate, row.parent) for row in detail.objectives}
        assert rates["pass_rate"] == (1.0, 0.5)
        [variant] = variants(autodev)
        assert variant.status == "passed" and variant.objectives["pass_rate"] == 1.0
        assert {"llm_cost_usd", "latency_s", "steps"} <= set(variant.objectives)
        assert variant.details["parent_version"] == 1
        assert variant.details["operators"] == ["rewrite_comparison_field"]
        evidence = variant.details["evidence"]
        assert (evidence["passed_before"], evidence["passed_after"]) == (2, 4)
        assert [t["passed"] for t in evidence["after"]] == [True] * 4
        with autodev.database.session() as session:
            # Failures delivered while the cycle ran may queue another: it skips (the
            # variant awaits review), so exactly one cycle completes.
            run = session.scalars(select(EvolutionRun).where(
                EvolutionRun.engine == "workflow_evolver",
                EvolutionRun.status == "completed")).one()
            assert run.agent == "support-bot"
            assert run.stats["pass_rate_before"] == 0.5 and run.stats["pass_rate_after"] == 1.0
            assert run.stats["strategy"] == OFFLINE_STRATEGY and run.evaluations >= 1

        autodev.review.approve("t1", pending.id, actor="bob", reason="the branch is right now")
        promoted = await autodev.promote(pending.id, actor="bob", reason="ship it")
        assert promoted.workflow_name == "refund_support"
        versions = autodev.workflow_versions("refund_support", tenant_id="t1")
        assert [(v.version, v.is_active, v.source) for v in versions] == [
            (1, False, "user"), (2, True, "variant")]
        live = autodev.workflow_definition("refund_support", tenant_id="t1")
        assert live["steps"][1]["switch"][0]["when"] == "steps.order.status == 'shipped'"

        autodev.rollback_workflow("refund_support", 1, actor="bob", reason="checking v1")
        assert autodev.workflow_definition("refund_support", tenant_id="t1") == BROKEN
        assert [v.version for v in autodev.workflow_versions("refund_support", tenant_id="t1")
                if v.is_active] == [1]

    async def test_failing_runs_without_expected_output_are_tasks_that_must_run(
            self, autodev: AutoDev) -> None:
        """A failing run that named no expected output is evaluated as a task that must end
        ok, next to the stored tasks."""
        setup(autodev)
        await record_failures(autodev)
        await autodev.record_episode(agent="support-bot", task="refund A9", success=False,
                                     workflow="refund_support", inputs={"order_id": "A9"},
                                     error_trace="KeyError: 'A9'", tenant_id="t1")
        await autodev.drain()
        [variant] = variants(autodev)
        before = variant.details["evidence"]["before"]
        assert len(before) == len(variant.details["evidence"]["after"]) == 5
        [unknown] = [t for t in before if t["name"] == "failing run 1"]
        assert not unknown["passed"] and "KeyError" in unknown["error"]
        assert "expected" not in unknown

    async def test_a_workflow_that_already_passes_gets_no_candidate(
            self, autodev: AutoDev) -> None:
        """Nothing is offered when the active version solves every task, and the run says so."""
        fixed = copy.deepcopy(BROKEN)
        fixed["steps"][1]["switch"][0]["when"] = "steps.order.status == 'shipped'"
        setup(autodev, doc=fixed)
        autodev.add_workflow_task("refund_support", {"order_id": "A1"}, expected("A1"),
                                  tenant_id="t1")
        result = await autodev.run_cycle("workflow_evolver", "refund_support",
                                         agent="support-bot", budget=20)
        assert result.status == "completed" and not result.offered_ids
        assert "already solves every task" in result.reason
        assert variants(autodev) == []

    async def test_no_new_cycle_while_a_variant_awaits_review(self, autodev: AutoDev) -> None:
        """A second cycle before the reviewer decided is skipped and names the variant."""
        setup(autodev)
        await record_failures(autodev)
        await autodev.drain()
        [variant] = variants(autodev)
        again = await autodev.run_cycle("workflow_evolver", "refund_support",
                                        agent="support-bot", budget=20)
        assert again.status == "skipped" and variant.id[:12] in again.reason
        assert again.strategy == OFFLINE_STRATEGY
        assert len(variants(autodev)) == 1

    async def test_a_workflow_without_tasks_is_skipped(self, autodev: AutoDev) -> None:
        """Without runs or tasks there is nothing to evaluate against."""
        setup(autodev)
        result = await autodev.run_cycle("workflow_evolver", "refund_support",
                                         agent="support-bot", budget=20)
        assert result.status == "skipped" and "no tasks" in result.reason


    async def test_tasks_the_active_version_refuses_are_dropped(self, autodev: AutoDev) -> None:
        """Runs recorded before the workflow required another input are not run against it;
        the run counts them and, with nothing left, says there are no tasks."""
        setup(autodev)
        await record_failures(autodev)
        stricter = copy.deepcopy(BROKEN)
        stricter["input"] = {"required": ["order_id", "channel"]}
        assert autodev.register_workflow(stricter, actor="alice", tenant_id="t1") == 2
        result = await autodev.run_cycle("workflow_evolver", "refund_support",
                                         agent="support-bot", budget=10)
        assert result.status == "skipped" and "no tasks" in result.reason
        with autodev.database.session() as session:
            run = session.get(EvolutionRun, result.run_id)
            assert run is not None and run.stats["tasks_dropped"] == 4


class TestAutoPromotion:
    """Where the gate allows auto-promotion, the pipeline promotes the variant itself."""

    async def test_autonomous_agent_gets_the_repair_live(self, autodev: AutoDev) -> None:
        """An autonomous agent with auto-promotion on: v2 is live without a reviewer."""
        setup(autodev, maturity="autonomous")
        autodev.configure_tenant("t1", auto_promotion=True)
        autodev.set_maturity("support-bot", "auto_dev.auto_promotion", "autonomous",
                             tenant_id="t1")
        await record_failures(autodev)
        await autodev.drain()
        [variant] = variants(autodev)
        assert variant.status == "promoted"
        versions = autodev.workflow_versions("refund_support", tenant_id="t1")
        assert [(v.version, v.is_active, v.created_by) for v in versions][-1][:2] == (2, True)


class TestEvents:
    """Only the workflow engine reacts to a workflow's failures."""

    async def test_workflow_failures_queue_only_workflow_cycles(self, autodev: AutoDev) -> None:
        """AlphaEvolver and Memento leave a workflow run's failure alone."""
        autodev.configure_tenant("t1", enabled=True, workflows=True, alpha_evolver=True,
                                 memento_skills=True)
        setup(autodev)
        for capability in ("auto_dev.alpha_evolver", "auto_dev.memento_skills"):
            autodev.set_maturity("support-bot", capability, "autonomous", tenant_id="t1")
        await record_failures(autodev, order_ids=("A1", "A3", "A1"))
        await autodev.drain()
        with autodev.database.session() as session:
            engines = set(session.scalars(select(EvolutionRun.engine)))
        assert engines == {"workflow_evolver"}

    async def test_schedules_without_target_fire_on_failing_workflows(
            self, autodev: AutoDev) -> None:
        """A schedule of the workflow engine queues its failing workflows, not tools; the
        tool engines' schedules never name a workflow."""
        setup(autodev, workflows=False)
        await record_failures(autodev)
        assert autodev.scheduler.recent_targets("workflow_evolver", "t1") == ["refund_support"]
        assert autodev.scheduler.recent_targets("workflow_evolver", "t2") == []
        assert autodev.scheduler.recent_targets("alpha_evolver", "t1") == []

    def test_cycle_target_is_a_workflow_of_the_events_tenant(self, autodev: AutoDev) -> None:
        """A failure names its workflow; a tool failure or another tenant's name asks nothing."""
        setup(autodev)
        engine = autodev.engines.get("workflow_evolver")
        assert isinstance(engine, WorkflowEvolver)
        t1, t2 = TenantView(autodev.database, "t1"), TenantView(autodev.database, "t2")
        failed = TaskFailed(tenant_id="t1", agent_id="support-bot", workflow="refund_support")
        assert engine.cycle_target(failed, t1) == "refund_support"
        assert engine.cycle_target(failed, t2) is None
        tool_failure = TaskFailed(tenant_id="t1", agent_id="support-bot", tool_name="get_order")
        assert engine.cycle_target(tool_failure, t1) is None


class TestTenantIsolation:
    """A failure of tenant A's workflow never reads or changes tenant B's."""

    async def test_same_named_workflows_stay_apart(self, autodev: AutoDev) -> None:
        """t1's cycle uses t1's tools and tasks and changes nothing of t2's."""
        # t2: the same names, other orders, and a correct workflow.
        t2_orders = {"A1": ("processing", "paid"), "A3": ("processing", "paid")}
        fixed = copy.deepcopy(BROKEN)
        fixed["steps"][1]["switch"][0]["when"] = "steps.order.status == 'shipped'"
        setup(autodev, tenant="t2", orders=t2_orders, doc=fixed)
        autodev.add_workflow_task("refund_support", {"order_id": "A1"},
                                  expected("A1", t2_orders), tenant_id="t2")
        t2_tasks = autodev.workflows.tasks("refund_support", tenant_id="t2")
        setup(autodev)
        await record_failures(autodev)
        await autodev.drain()
        [variant] = variants(autodev, "t1")
        # Evaluated with t1's tools: t2's get_order would have cancelled A1.
        outputs = [t["output"] for t in variant.details["evidence"]["after"]]
        assert expected("A1") in outputs and expected("A3") in outputs
        assert variants(autodev, "t2") == []
        assert [v.version for v in autodev.workflow_versions("refund_support",
                                                             tenant_id="t2")] == [1]
        assert autodev.workflow_definition("refund_support", tenant_id="t2") == fixed
        assert autodev.workflows.tasks("refund_support", tenant_id="t2") == t2_tasks
        with autodev.database.session() as session:
            assert set(session.scalars(select(EvolutionRun.tenant_id))) == {"t1"}

    async def test_a_run_of_an_unknown_workflow_is_refused(self, autodev: AutoDev) -> None:
        """Tenant t2 cannot record runs of t1's workflow: nothing is written."""
        setup(autodev)
        autodev.configure_tenant("t2", enabled=True, workflows=True)
        with pytest.raises(ValidationError) as err:
            await autodev.record_episode(agent="support-bot", task="refund", success=False,
                                         workflow="refund_support", inputs={"order_id": "A1"},
                                         tenant_id="t2")
        assert err.value.field == "workflow"
        await autodev.drain()
        assert variants(autodev, "t1") == [] and variants(autodev, "t2") == []


class TestGate:
    """Cycles need the workflows toggle and a supervised agent; a denied run says why."""

    @pytest.mark.parametrize(("toggle", "maturity", "why"), [
        (False, "autonomous", "turned off"), (True, "intern", "intern is below supervised")])
    async def test_denied_cycles_do_no_work(self, autodev: AutoDev, toggle: bool,
                                            maturity: str, why: str) -> None:
        """The run is denied with the reason and no variant is evaluated or stored."""
        setup(autodev, workflows=toggle, maturity=maturity)
        await record_failures(autodev)
        await autodev.drain()
        assert variants(autodev) == []
        with autodev.database.session() as session:
            runs = session.scalars(select(EvolutionRun).where(
                EvolutionRun.engine == "workflow_evolver")).all()
        assert runs  # each failure may queue its own (denied) cycle
        assert all(r.status == "denied" and why in (r.error or "") for r in runs)
        assert all(r.evaluations == 0 for r in runs)


# -- with a model -------------------------------------------------------------------------------

SHOUT: dict[str, Any] = {
    "name": "shout_reply", "input": {"required": ["topic"]},
    "steps": [{"id": "say", "llm": {"prompt": "Write one line about ${input.topic}.",
                                    "output": "text"}}],
    "output": "steps.say"}
REWRITE = ("The prompt never asks for capital letters.\n```prompt\n"
           "Write one line about ${input.topic}. Use capital letters only.\n```")


def answer(system: str, prompt: str) -> str:
    """The model: rewrites prompts when asked to, else writes the step's line (in capitals
    only when the prompt says so)."""
    if system.startswith("You improve the prompt"):
        return REWRITE
    if system.startswith("You repair workflows"):
        return "I cannot see a better workflow."
    topic = prompt.split("about ")[-1].split(".")[0]
    return topic.upper() if "capital letters" in prompt else topic


def _system(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")


async def shout_story(autodev: AutoDev) -> WorkflowVariant:
    autodev.configure_tenant("t1", enabled=True, workflows=True)
    autodev.register_workflow(SHOUT, actor="alice", tenant_id="t1")
    autodev.set_maturity("support-bot", "auto_dev.workflows", "supervised", tenant_id="t1")
    for topic in ("refunds", "delivery"):
        await autodev.record_episode(agent="support-bot", task=f"shout {topic}", success=False,
                                     workflow="shout_reply", inputs={"topic": topic},
                                     expected=topic.upper(), output=topic, tenant_id="t1")
    await autodev.drain()
    [variant] = variants(autodev)
    assert variant.status == "passed" and variant.operator == "reflective_prompt_rewrite"
    assert "capital letters" in variant.definition["steps"][0]["llm"]["prompt"]
    detail = autodev.review.show("t1", variant.id)
    assert "changed step say" in detail.diff
    return variant


@pytest.fixture
async def model_autodev(database: Database, database_url: str,
                        sandbox: ProcessSandbox) -> AsyncIterator[tuple[AutoDev, FakeLLM]]:
    llm = FakeLLM(default=lambda messages: answer(_system(messages),
                                                  str(messages[-1]["content"])))
    settings = load_settings(database_url=database_url, tenant="t1")
    instance = AutoDev(settings, database=database, sandbox=sandbox, llm=llm,
                       load_plugins=False)
    await instance.start()
    try:
        yield instance, llm
    finally:
        await instance.aclose()


class TestWithFakeLLM:
    """A prompt that omits an instruction is rewritten from the failing traces."""

    async def test_reflective_rewrite_repairs_the_prompt(
            self, model_autodev: tuple[AutoDev, FakeLLM]) -> None:
        """The variant adds the missing instruction, reaches review and is promoted."""
        autodev, llm = model_autodev
        variant = await shout_story(autodev)
        assert any("refunds" in call.prompt for call in llm.calls
                   if _system(call.messages).startswith("You improve the prompt"))
        with autodev.database.session() as session:
            run = session.scalars(select(EvolutionRun).where(
                EvolutionRun.status == "completed")).one()
            assert run.stats["strategy"] == MODEL_STRATEGY
        autodev.review.approve("t1", variant.id, actor="bob", reason="capitals it is")
        await autodev.promote(variant.id, actor="bob", reason="ship it")
        assert "capital letters" in autodev.workflow_definition(
            "shout_reply", tenant_id="t1")["steps"][0]["llm"]["prompt"]


class TestModelFailures:
    """A model that does not answer leaves the offline search, and the run says so."""

    async def test_failed_model_calls_are_named_in_the_strategy(
            self, database: Database, database_url: str, sandbox: ProcessSandbox) -> None:
        """Every operator call fails: no variant, and the strategy counts the failed calls."""
        from auto_dev._exceptions import LLMResponseError

        def broken(messages: list[dict[str, Any]]) -> Any:
            if _system(messages).startswith(("You improve the prompt", "You repair workflows")):
                return LLMResponseError("the model is down")
            return answer("", str(messages[-1]["content"]))

        settings = load_settings(database_url=database_url, tenant="t1")
        autodev = AutoDev(settings, database=database, sandbox=sandbox,
                          llm=FakeLLM(default=broken), load_plugins=False)
        try:
            autodev.configure_tenant("t1", enabled=True, workflows=True)
            autodev.register_workflow(SHOUT, actor="alice", tenant_id="t1")
            autodev.set_maturity("support-bot", "auto_dev.workflows", "supervised",
                                 tenant_id="t1")
            autodev.add_workflow_task("shout_reply", {"topic": "refunds"}, "REFUNDS",
                                      tenant_id="t1")
            result = await autodev.run_cycle("workflow_evolver", "shout_reply",
                                             agent="support-bot", budget=5)
            assert result.status == "completed" and not result.offered_ids
            assert result.strategy.startswith(MODEL_STRATEGY)
            assert "model call(s) failed" in result.strategy
        finally:
            await autodev.aclose()


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    def respond(body: dict[str, Any]) -> ServerReply:
        messages = body.get("messages") or []
        return ServerReply(content=answer(_system(messages), str(messages[-1]["content"])))

    with OpenAICompatibleServer(respond) as srv:
        yield srv


class TestWithTheLocalServer:
    """The same repair through litellm's real client and a local OpenAI-compatible server."""

    async def test_reflective_rewrite_through_litellm(
            self, server: OpenAICompatibleServer, database: Database, database_url: str,
            sandbox: ProcessSandbox) -> None:
        """Step calls and the rewrite go over HTTP, and every call is in the ledger."""
        from auto_dev.models import LLMCall

        settings = load_settings(
            database_url=database_url, tenant="t1", llm_model="openai/writer",
            llm_api_base=server.base_url, llm_api_key="sk-test",
            llm={"num_retries": 0, "prices": {"openai/writer": {
                "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}})
        autodev = AutoDev(settings, database=database, sandbox=sandbox, load_plugins=False)
        await autodev.start()
        try:
            assert autodev.llm is not None
            await shout_story(autodev)
            assert any(_system(r.messages).startswith("You improve the prompt")
                       for r in server.requests)
            with autodev.database.session() as session:
                purposes = set(session.scalars(select(LLMCall.purpose)))
            assert "workflow_step" in purposes and len(purposes) >= 2
        finally:
            await autodev.aclose()


class TestRegistration:
    """WorkflowEvolver is a built-in engine, listed by ``auto-dev engines list``."""

    def test_built_in_next_to_the_others(self, autodev: AutoDev) -> None:
        """The facade registers it with its capability and subscription."""
        engine = autodev.engines.get("workflow_evolver")
        assert isinstance(engine, WorkflowEvolver)
        assert engine.capability == "auto_dev.workflows"
        assert engine.subscriptions == (TaskFailed,)
        assert {"alpha_evolver", "memento", "workflow_evolver"} <= set(autodev.engines.names())

    def test_listed_by_the_cli(self, tmp_path: Any) -> None:
        """The engines table names it and its capability."""
        from typer.testing import CliRunner

        from auto_dev.cli import app

        env = {"AUTO_DEV_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "COLUMNS": "200"}
        listed = CliRunner().invoke(app, ["engines", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert "workflow_evolver" in listed.output and "auto_dev.workflows" in listed.output
