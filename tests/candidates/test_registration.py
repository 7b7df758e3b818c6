"""register_tool validates what it stores and never replaces live code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from auto_dev._exceptions import ValidationError
from auto_dev.models import AuditEntry, Tool, ToolVersion
from tests.gates.conftest import FIXED_CODE, TENANT, TOOL_CODE, World


def _count(world: World, model: Any) -> int:
    with world.database.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _register(world: World, **kw: Any) -> str:
    args = {"tenant_id": TENANT, "name": "new", "code": "def f(x):\n    return x\n",
            "entrypoint": "f", **kw}
    with world.database.session() as s:
        return world.store.register_tool(s, **args).id


class TestValidation:
    """Bad code, entrypoints and names are refused, naming the field, writing nothing."""

    @pytest.mark.parametrize(("kwargs", "field", "words"), [
        ({"code": "def f(x):\n    return (x\n"}, "code", "does not parse"),
        ({"code": "def f(x):\n\treturn x\n        return x\n"}, "code", "does not parse"),
        ({"code": "def g(x):\n    return x\n"}, "entrypoint", "'f' is not defined"),
        ({"code": "class K:\n    def f(self):\n        return 1\n"}, "entrypoint",
         "not defined at the top level"),
        ({"code": "def outer():\n    def f(x):\n        return x\n"}, "entrypoint",
         "not defined at the top level"),
        ({"entrypoint": "not an identifier"}, "entrypoint", "Python identifier"),
        ({"name": " "}, "name", "non-empty"),
        ({"name": "n" * 201}, "name", "at most 200"),
        ({"code": ""}, "code", "non-empty"),
    ])
    def test_refused_and_nothing_written(self, world: World, kwargs: dict[str, Any],
                                         field: str, words: str) -> None:
        """Each refusal names its field; no tool or version is created."""
        tools, versions = _count(world, Tool), _count(world, ToolVersion)
        with pytest.raises(ValidationError) as refused:
            _register(world, **kwargs)
        assert refused.value.field == field and words in refused.value.problem
        assert (_count(world, Tool), _count(world, ToolVersion)) == (tools, versions)

    def test_code_is_never_executed(self, world: World, tmp_path: Any) -> None:
        """Checking the entrypoint reads the syntax tree: top-level side effects do not run."""
        marker = tmp_path / "ran"
        code = f"open({str(marker)!r}, 'w').write('x')\ndef f(x):\n    return x\n"
        _register(world, code=code)
        assert not marker.exists()

    @pytest.mark.parametrize("code", [
        "f = lambda x: x\n",
        "import math\nf = math.floor\n",
        "async def f(x):\n    return x\n",
        "class f:\n    def __init__(self, x):\n        self.x = x\n",
    ])
    def test_any_top_level_binding_is_an_entrypoint(self, world: World, code: str) -> None:
        """A callable bound at top level by assignment, import, def or class is accepted."""
        assert _register(world, code=code)

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(defined=st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True),
           asked=st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True))
    def test_entrypoint_must_be_the_defined_name(self, world: World, defined: str,
                                                 asked: str) -> None:
        """Registration succeeds exactly when the entrypoint is the name the code defines."""
        import keyword

        if keyword.iskeyword(defined) or keyword.iskeyword(asked):
            return
        code = f"def {defined}(x):\n    return x\n"
        name = f"tool_{defined}_{asked}"
        if defined == asked:
            assert _register(world, name=name, code=code, entrypoint=asked)
        else:
            with pytest.raises(ValidationError) as refused:
                _register(world, name=name, code=code, entrypoint=asked)
            assert refused.value.field == "entrypoint"


class TestReRegistration:
    """Registering again is a no-op for the same code and refused for different code."""

    def test_identical_code_is_a_no_op(self, world: World) -> None:
        """Same program (formatting and comments aside): same id, no version, no audit."""
        audits = _count(world, AuditEntry)
        again = _register(world, name="inc", code=f"# the seed\n{TOOL_CODE}", entrypoint="inc")
        assert again == world.tool_id
        with world.database.session() as s:
            versions = s.scalars(select(ToolVersion.version).where(
                ToolVersion.tool_id == world.tool_id)).all()
        assert versions == [1] and _count(world, AuditEntry) == audits

    @pytest.mark.parametrize(("code", "entrypoint"), [
        (FIXED_CODE, "inc"),
        ("def inc(x):\n    return x + 2\ndef inc2(x):\n    return x\n", "inc2"),
    ])
    def test_new_code_points_to_a_reviewed_change(self, world: World, code: str,
                                                  entrypoint: str) -> None:
        """Different code or entrypoint is refused (v1 stays live) with the way to propose it."""
        with pytest.raises(ValidationError) as refused:
            _register(world, name="inc", code=code, entrypoint=entrypoint)
        assert refused.value.field == "code"
        assert "already exists with different code (active v1)" in refused.value.problem
        assert "AutoDev.propose_tool_change('inc'" in refused.value.problem
        with world.database.session() as s:
            active = s.scalars(select(ToolVersion).where(ToolVersion.is_active.is_(True))).one()
            assert (active.version, active.code) == (1, TOOL_CODE)
