"""Cases of the benchmark suite repaired end to end: real tools in the process sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auto_dev.sandbox.process import ProcessSandbox
from auto_dev.workflows import SandboxToolInvoker, WorkflowInterpreter, load_tools_file
from auto_dev.workflows.search import evolve_workflow, load_tasks_file

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "workflows"


@pytest.mark.slow
class TestSuiteCases:
    """A wrong tool, a missing catch and a wrong argument path are repaired offline."""

    @pytest.mark.parametrize("case", ["wrong_tool", "missing_catch", "wrong_arg_path"])
    async def test_repaired_in_the_process_sandbox(self, case: str) -> None:
        """The broken workflow fails some tasks; the search makes it pass all, within 300."""
        folder = SUITE / case
        sandbox = ProcessSandbox(workers=2)
        try:
            interpreter = WorkflowInterpreter(SandboxToolInvoker(
                sandbox, load_tools_file(folder / "tools.py")))
            result = await evolve_workflow(json.loads((folder / "workflow.json").read_text()),
                                           load_tasks_file(folder / "tasks.json"),
                                           interpreter=interpreter, budget=300, seed=0)
        finally:
            await sandbox.aclose()
        assert result.original_passed < result.total
        assert result.solved and result.improved and result.evaluations <= 300
        assert all(r.passed for r in result.tasks)



class TestSuiteShape:
    """The suite holds enough cases, each complete."""

    def test_every_case_is_well_formed(self) -> None:
        """Each case has its four files, 4 to 10 tasks, and says what is broken."""
        cases = [d for d in SUITE.iterdir() if d.is_dir()]
        assert len(cases) >= 12
        for folder in cases:
            tasks = load_tasks_file(folder / "tasks.json")
            assert 4 <= len(tasks) <= 10, folder.name
            assert load_tools_file(folder / "tools.py")
            meta = json.loads((folder / "case.json").read_text())
            assert meta["broken"] and meta["fix"] and meta["family"], folder.name
            json.loads((folder / "fixed.json").read_text())
