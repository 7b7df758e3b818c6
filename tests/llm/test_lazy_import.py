"""litellm is imported only when a model is called, never by imports or the CLI's help."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )


class TestLazyImport:
    """Only _litellm imports litellm, and only at the first call."""

    def test_imports_do_not_load_litellm(self) -> None:
        """Every LLM-layer module, the fakes and the CLI import without litellm."""
        result = run_python("""
            import sys
            import auto_dev
            import auto_dev.llm.client, auto_dev.llm.factory, auto_dev.llm.mutator
            import auto_dev.llm.skills, auto_dev.llm.budget, auto_dev.llm.ledger
            import auto_dev.llm.prompts, auto_dev.llm.breaker, auto_dev.llm.deployments
            import auto_dev.testing, auto_dev.cli, auto_dev.cli.llm
            assert "litellm" not in sys.modules, "litellm was imported"
            print("ok")
        """)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ok"

    @pytest.mark.parametrize("argv", [["--help"], ["llm", "--help"], ["llm", "status"]])
    def test_cli_does_not_load_litellm(self, argv: list[str], tmp_path: object) -> None:
        """`auto-dev --help`, `auto-dev llm --help` and `auto-dev llm status` skip litellm."""
        result = run_python(
            f"""
            import sys
            sys.argv = ["auto-dev", *{argv!r}]
            from auto_dev.cli import main
            try:
                main()
            except SystemExit as exc:
                assert not exc.code, exc.code
            assert "litellm" not in sys.modules, "litellm was imported"
            """,
            AUTO_DEV_LLM_MODEL="openai/x",
            AUTO_DEV_DATABASE_URL=f"sqlite:///{tmp_path}/none.db",
        )
        assert result.returncode == 0, result.stderr + result.stdout

    def test_first_call_sets_the_offline_price_map(self) -> None:
        """Loading litellm sets LITELLM_LOCAL_MODEL_COST_MAP first, keeping a user's value."""
        result = run_python("""
            import os, sys
            os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
            from auto_dev.llm import _litellm
            _litellm.load()
            assert "litellm" in sys.modules
            print(os.environ["LITELLM_LOCAL_MODEL_COST_MAP"])
        """)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "True"
