"""The configuration reference in README.md covers every setting and matches the code."""

from __future__ import annotations

from pathlib import Path

from auto_dev._config_reference import (
    LLM_MEANINGS,
    SETTINGS_MEANINGS,
    main,
    render_markdown,
    replace_in,
    section_of,
)
from auto_dev.config import LLMSettings, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


class TestConfigReference:
    """Every Settings field is documented in the README with its default."""

    def test_every_field_has_a_meaning(self) -> None:
        """A new field without a written meaning fails here, naming the module to edit."""
        assert set(SETTINGS_MEANINGS) == set(Settings.model_fields)
        assert set(LLM_MEANINGS) == set(LLMSettings.model_fields)

    def test_readme_holds_the_generated_reference(self) -> None:
        """README.md is up to date: regenerate with
        ``python -m auto_dev._config_reference --write README.md``."""
        assert section_of(README.read_text(encoding="utf-8")) == render_markdown()

    def test_every_variable_and_key_appears_with_its_default(self) -> None:
        """Each field's TOML key, AUTO_DEV_* variable and default are in the README."""
        text = section_of(README.read_text(encoding="utf-8"))
        rows = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines()
                if line.startswith("| `")}
        for name in Settings.model_fields:
            assert f"`AUTO_DEV_{name.upper()}`" in rows[name]
        assert '`"sqlite:///./auto_dev.db"`' in rows["database_url"]
        assert "`200`" in rows["evolution_budget"]
        for name in LLMSettings.model_fields:
            assert f"`AUTO_DEV_LLM__{name.upper()}`" in rows[name]
        assert "`2`" in rows["num_retries"] and "unset" in rows["daily_budget_usd"]

    def test_write_replaces_only_the_generated_part(self, tmp_path: Path) -> None:
        """--write rewrites the block between the markers and leaves the rest alone."""
        readme = tmp_path / "README.md"
        original = README.read_text(encoding="utf-8")
        stale = original.replace("`AUTO_DEV_TENANT`", "`AUTO_DEV_TENANT_OLD`")
        readme.write_text("# intro\n" + stale)
        assert main(["--write", str(readme)]) == 0
        assert readme.read_text() == "# intro\n" + original
        assert replace_in(original) == original
