"""Which version a rollback re-activates: one rule for tools and workflows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from auto_dev._exceptions import NotFoundError, ValidationError


class _Version(Protocol):
    id: Any
    version: Any


V = TypeVar("V", bound=_Version)


def rollback_target(
    versions: Sequence[V], current: V, to_version: Any, *, rolled_back: Callable[[V], bool],
    subject: str, name: str, version_field: str, name_field: str,
) -> V:
    """Version ``to_version`` of ``versions`` (newest first), or, when it is ``None``, the
    newest version older than ``current`` that was not itself rolled back. ``subject`` names
    the tool or workflow in errors (``tool 'x'``), which name ``version_field`` or
    ``name_field``."""
    if to_version is not None:
        if isinstance(to_version, bool) or not isinstance(to_version, int) or to_version < 1:
            raise ValidationError(version_field, "must be a positive version number")
        target = next((v for v in versions if v.version == to_version), None)
        if target is None:
            raise NotFoundError(f"{version_field}: {subject} has no version {to_version}")
        if target.id == current.id:
            raise ValidationError(version_field, f"version {to_version} is already active")
        return target
    earlier = next((v for v in versions if v.version < current.version
                    and not rolled_back(v)), None)
    if earlier is None:
        raise ValidationError(name_field, f"{name!r} has no earlier version to roll back to "
                              f"from v{current.version}")
    return earlier
