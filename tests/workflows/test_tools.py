"""Tests for tools of workflows: the sandbox invoker and reading a tools.py file."""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from auto_dev._exceptions import SandboxError, ToolCallError, ToolTimeoutError, ValidationError
from auto_dev._testing_sandbox import ScriptedSandbox
from auto_dev.sandbox.base import Case
from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.workflows import (
    RunLimits,
    SandboxToolInvoker,
    WorkflowInterpreter,
    load_tools_file,
)
from auto_dev.workflows.tools import seeded_source
from tests.workflows._support import workflow

TOOLS_PY = textwrap.dedent('''
    """Tools of a support desk."""
    from __future__ import annotations

    import random
    import time


    def get_order(order_id: str) -> dict:
        return {"id": order_id, "status": "shipped" if order_id.startswith("S") else "open"}


    def flaky_lookup(order_id: str) -> dict:
        if random.random() < 0.5:
            raise ConnectionError("upstream unavailable")
        return {"id": order_id, "roll": random.random()}


    def roll() -> float:
        return random.random()


    def sleepy(seconds: float) -> str:
        time.sleep(seconds)
        return "awake"


    def broken(x):
        return x["missing"]


    def _helper():
        return "not a tool"


    async def not_a_tool():
        return 1
''')


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(TOOLS_PY)
    return path


@pytest.fixture
async def sandbox() -> AsyncIterator[ProcessSandbox]:
    box = ProcessSandbox(workers=2)
    try:
        yield box
    finally:
        await box.aclose()


class TestLoadToolsFile:
    """Each public top-level function is a tool; the file is parsed, never imported."""

    def test_public_functions_are_tools(self, tools_file: Path) -> None:
        """Helpers (_name) and async functions are not tools; each tool maps to the file."""
        tools = load_tools_file(tools_file)
        assert sorted(tools) == ["broken", "flaky_lookup", "get_order", "roll", "sleepy"]
        assert all(code == TOOLS_PY for code in tools.values())

    def test_never_imported(self, tmp_path: Path) -> None:
        """Top-level code of the file does not run in our process."""
        marker = tmp_path / "ran"
        path = tmp_path / "tools.py"
        path.write_text(f"open({str(marker)!r}, 'w').write('x')\n\ndef t():\n    return 1\n")
        assert list(load_tools_file(path)) == ["t"]
        assert not marker.exists()

    @pytest.mark.parametrize(("content", "problem"), [
        ("def broken(:\n", "syntax error"),
        ("x = 1\n", "defines no tool"),
        ("def _only_private():\n    pass\n", "defines no tool"),
    ])
    def test_bad_file(self, tmp_path: Path, content: str, problem: str) -> None:
        """A file without usable tools names the tools field and the problem."""
        path = tmp_path / "tools.py"
        path.write_text(content)
        with pytest.raises(ValidationError) as info:
            load_tools_file(path)
        assert info.value.field == "tools"
        assert problem in info.value.problem

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ValidationError, not an OSError."""
        with pytest.raises(ValidationError) as info:
            load_tools_file(tmp_path / "nope.py")
        assert info.value.field == "tools" and "does not exist" in info.value.problem


class TestSeededSource:
    """The seeding lines keep the tool's own lines where they were."""

    def test_appended_after_the_code(self) -> None:
        """The code is unchanged up to its end; the seed follows."""
        code = "from __future__ import annotations\n\ndef f():\n    return 1\n"
        seeded = seeded_source(code, 42)
        assert seeded.startswith(code.rstrip())
        assert "_auto_dev_random.seed(42)" in seeded
        compile(seeded, "tool", "exec")


class TestStatusMapping:
    """Case statuses become ToolCallError or ToolTimeoutError (no process needed)."""

    @staticmethod
    def _invoker(script: Any) -> tuple[SandboxToolInvoker, ScriptedSandbox]:
        box = ScriptedSandbox(script)
        return SandboxToolInvoker(box, {"t": "def t(**kw):\n    return kw\n"}), box

    async def test_job_shape(self) -> None:
        """One job, one case with the args as kwargs, the step's timeout as the limit."""
        invoker, box = self._invoker(lambda code, case: case.kwargs["a"] * 2)
        assert await invoker.invoke("t", {"a": 21}, timeout_s=1.5, seed=9) == 42
        job = box.jobs[0]
        assert job.entrypoint == "t" and job.limits.timeout_s == 1.5
        assert job.cases == (Case(kwargs={"a": 21}, has_expected=False),)
        assert "seed(9)" in job.code

    @pytest.mark.parametrize(("raised", "error"), [
        (TimeoutError(), ToolTimeoutError), (MemoryError(), ToolCallError),
        (KeyError("k"), ToolCallError)])
    async def test_failures(self, raised: BaseException, error: type[Exception]) -> None:
        """timeout is a ToolTimeoutError, every other failure a ToolCallError with the text."""
        def script(code: str, case: Case) -> Any:
            raise raised

        invoker, _ = self._invoker(script)
        with pytest.raises(error) as info:
            await invoker.invoke("t", {}, timeout_s=None, seed=0)
        assert info.type is error

    async def test_unknown_tool_and_broken_sandbox(self) -> None:
        """An unknown tool and a sandbox failure are tool-call errors too."""
        invoker, _ = self._invoker(lambda code, case: 1)
        with pytest.raises(ToolCallError, match="unknown tool"):
            await invoker.invoke("nope", {}, timeout_s=None, seed=0)

        def broken(code: str, case: Case) -> Any:
            raise AssertionError("unreachable")

        class Broken(ScriptedSandbox):
            async def run(self, job: Any) -> Any:
                raise SandboxError("workers gone")

        with pytest.raises(ToolCallError, match="workers gone"):
            await SandboxToolInvoker(Broken(broken), {"t": "def t(): pass"}).invoke(
                "t", {}, timeout_s=None, seed=0)

    def test_bad_tool_names(self) -> None:
        """Tool names must be identifiers (they are entrypoints)."""
        with pytest.raises(ValidationError):
            SandboxToolInvoker(ScriptedSandbox(lambda c, k: 1), {"not ok": "x"})


class TestProcessSandboxTools:
    """Tools run for real in the process sandbox."""

    async def test_call_and_errors(self, sandbox: ProcessSandbox, tools_file: Path) -> None:
        """A tool returns JSON; an exception and a timeout map to the right errors."""
        invoker = SandboxToolInvoker(sandbox, load_tools_file(tools_file))
        assert await invoker.invoke("get_order", {"order_id": "S1"}, timeout_s=5, seed=0) == {
            "id": "S1", "status": "shipped"}
        with pytest.raises(ToolCallError) as info:
            await invoker.invoke("broken", {"x": {}}, timeout_s=5, seed=0)
        assert "KeyError" in str(info.value) and not isinstance(info.value, ToolTimeoutError)
        with pytest.raises(ToolTimeoutError):
            await invoker.invoke("sleepy", {"seconds": 5}, timeout_s=0.3, seed=0)

    async def test_seed_makes_random_reproducible(self, sandbox: ProcessSandbox,
                                                  tools_file: Path) -> None:
        """The same seed gives the same random numbers inside the tool; another seed not."""
        invoker = SandboxToolInvoker(sandbox, load_tools_file(tools_file))
        first = await invoker.invoke("roll", {}, timeout_s=5, seed=11)
        again = await invoker.invoke("roll", {}, timeout_s=5, seed=11)
        other = await invoker.invoke("roll", {}, timeout_s=5, seed=12)
        assert first == again != other

    async def test_flaky_workflow_is_reproducible(self, sandbox: ProcessSandbox,
                                                  tools_file: Path) -> None:
        """A retried flaky tool gives the same trace for the same run seed."""
        interpreter = WorkflowInterpreter(SandboxToolInvoker(sandbox, load_tools_file(tools_file)))
        doc = workflow({"id": "look", "tool": "flaky_lookup", "args": {"order_id": "${input.id}"},
                        "retry": {"max_attempts": 6}, "timeout_s": 5}, output="steps.look")
        runs = [await interpreter.run(doc, {"id": "A"}, seed=seed) for seed in (1, 1, 2, 3)]
        assert runs[0].ok and runs[0].output["id"] == "A"
        assert runs[0].output == runs[1].output
        assert runs[0].step("look").attempts == runs[1].step("look").attempts  # type: ignore[union-attr]
        assert len({r.output["roll"] for r in runs if r.ok}) >= 2

    async def test_wall_time_stops_a_running_tool(self, sandbox: ProcessSandbox,
                                                  tools_file: Path) -> None:
        """A tool still running at the wall-time limit is stopped; the sandbox stays usable."""
        limits = RunLimits(wall_time_s=0.5)
        invoker = SandboxToolInvoker(sandbox, load_tools_file(tools_file))
        interpreter = WorkflowInterpreter(invoker, limits=limits)
        started = time.perf_counter()
        run = await interpreter.run(workflow({"id": "z", "tool": "sleepy",
                                              "args": {"seconds": 20}}), {})
        assert time.perf_counter() - started < 5
        assert not run.ok and "wall_time_s" in (run.error or "") and run.error_step == "z"
        assert await invoker.invoke("get_order", {"order_id": "S"}, timeout_s=5, seed=0)

    async def test_map_of_tools(self, sandbox: ProcessSandbox, tools_file: Path) -> None:
        """A map calls the tool once per item in the sandbox, results in item order."""
        interpreter = WorkflowInterpreter(SandboxToolInvoker(sandbox, load_tools_file(tools_file)))
        doc = workflow({"id": "m", "map": {"over": "input.ids", "as": "oid", "max_concurrency": 3,
                                           "steps": [{"id": "g", "tool": "get_order",
                                                      "args": {"order_id": "${oid}"},
                                                      "timeout_s": 10}]}},
                       output="steps.m[].status")
        run = await interpreter.run(doc, {"ids": ["S1", "A2", "S3", "B4"]})
        assert run.ok, run.error
        assert run.output == ["shipped", "open", "shipped", "open"]
