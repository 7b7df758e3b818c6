"""The curated public API of ``auto_dev``."""

from __future__ import annotations

import subprocess
import sys

import auto_dev


class TestPublicAPI:
    """``auto_dev.__all__`` is sorted, complete and cheap to import."""

    def test_all_is_sorted_and_unique(self) -> None:
        """__all__ lists each name once, in sorted order."""
        assert list(auto_dev.__all__) == sorted(set(auto_dev.__all__))

    def test_every_name_resolves(self) -> None:
        """Every listed name can be imported from the package."""
        for name in auto_dev.__all__:
            assert getattr(auto_dev, name) is not None, name

    def test_lazy_table_matches_all(self) -> None:
        """Every lazily loaded name is exported and every exported class is reachable."""
        lazy = set(auto_dev._LAZY)
        assert lazy <= set(auto_dev.__all__)
        eager = {n for n in auto_dev.__all__ if n not in lazy}
        assert all(n in vars(auto_dev) for n in eager)

    def test_every_error_is_exported(self) -> None:
        """Every class of the error tree is part of the public API."""
        from auto_dev import _exceptions

        errors = {n for n, v in vars(_exceptions).items()
                  if isinstance(v, type) and issubclass(v, _exceptions.AutoDevError)}
        assert errors <= set(auto_dev.__all__)

    def test_import_is_light(self) -> None:
        """Importing auto_dev and the CLI does not import litellm, docker or SQLAlchemy."""
        code = ("import sys, auto_dev, auto_dev.cli; "
                "heavy = [m for m in ('litellm', 'docker', 'sqlalchemy', 'numpy') "
                "if m in sys.modules]; print(heavy)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == "[]"
