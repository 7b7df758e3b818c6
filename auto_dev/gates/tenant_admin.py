"""Reading and changing a tenant's settings (toggles, limits, budgets, graduation), audited.

Changes are given per key, with dotted keys for nested settings: ``enabled``,
``daily_candidates_per_agent``, ``graduation.min_verified_successes``, ``capabilities.acme.lint``
(everything after ``capabilities.`` is the capability name). ``None`` puts a key back to its
default. The changes are applied to the stored object and the result is validated as a whole
through :class:`~auto_dev.gates.settings.TenantSettings` before anything is written, so a bad value
is an error naming its key and nothing changes; a stored object that is itself broken can be
repaired by changing (or resetting) the broken key. Every change is audited with who made it, why,
and each key's value before and after.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from auto_dev._exceptions import NotFoundError, ValidationError
from auto_dev.gates._audit import write_audit
from auto_dev.gates._queries import (
    count_candidates_today,
    count_promotions_today,
    day_start,
    get_tenant,
)
from auto_dev.gates.settings import TenantSettings
from auto_dev.models import Tenant

log = structlog.get_logger(__name__)

#: Settings whose value is an object of named entries, addressed as ``name.entry``.
_NESTED = ("graduation", "capabilities")


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """What a change did: the settings after it and each changed key's (before, after)."""

    tenant_id: str
    settings: TenantSettings
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    created: bool = False


def read_tenant_settings(session: Session, tenant_id: str) -> TenantSettings:
    """The tenant's validated settings (a broken row raises the error naming its key)."""
    return TenantSettings.from_raw(_tenant(session, tenant_id).settings)


def counts_today(session: Session, tenant_id: str, now: datetime) -> dict[str, int]:
    """What today's limits are measured against: candidates (not failed) and promotions of the
    tenant since midnight UTC."""
    _tenant(session, tenant_id)
    since = day_start(now)
    return {"candidates": count_candidates_today(session, tenant_id, None, since)["tenant"],
            "promotions": count_promotions_today(session, tenant_id, since)}


def flatten_settings(settings: TenantSettings | Mapping[str, Any]) -> dict[str, Any]:
    """Settings as ``{dotted key: value}``, JSON-valued, in field order."""
    raw = settings.model_dump(mode="json") if isinstance(settings, TenantSettings) \
        else dict(settings)
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _NESTED and isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def change_tenant_settings(
    session: Session,
    tenant_id: str,
    changes: Mapping[str, Any],
    *,
    actor: str,
    reason: str,
    create: bool = False,
) -> SettingsChange:
    """Apply ``changes`` (dotted keys; ``None`` resets) to the tenant's settings, validated as a
    whole; audit the change. ``create`` makes the tenant if it does not exist (all off)."""
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("actor", "must name who changes the settings")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("reason", "must say why the settings change")
    if not isinstance(changes, Mapping) or not changes:
        raise ValidationError("changes", "must name at least one setting to change")
    tenant = get_tenant(session, tenant_id) if isinstance(tenant_id, str) else None
    created = False
    if tenant is None:
        if not create:
            raise NotFoundError(f"tenant {tenant_id!r} does not exist")
        if (not isinstance(tenant_id, str) or not tenant_id.strip() or len(tenant_id) > 64
                or not tenant_id.isprintable()):
            raise ValidationError("tenant_id", "must be 1-64 printable characters")
        tenant = Tenant(id=tenant_id, name=tenant_id, settings={})
        session.add(tenant)
        session.flush()
        created = True
    stored = tenant.settings if isinstance(tenant.settings, Mapping) else {}
    try:
        before = flatten_settings(TenantSettings.from_raw(stored))
    except ValidationError:
        before = flatten_settings(stored)  # broken: the change may be what repairs it
    merged = _apply(stored, changes)
    after_settings = TenantSettings.from_raw(merged)
    after = flatten_settings(after_settings)
    changed = {key: (before.get(key), after.get(key))
               for key in dict.fromkeys([*before, *after])
               if before.get(key) != after.get(key) or (key in before) != (key in after)}
    tenant.settings = after_settings.model_dump(mode="json")
    if changed or created:
        write_audit(session, tenant_id=tenant_id, actor=actor.strip(),
                    action="tenant.settings_changed", subject_kind="tenant",
                    subject_id=tenant_id, reason=reason.strip(),
                    details={"created": created,
                             "changes": {k: {"before": b, "after": a}
                                         for k, (b, a) in changed.items()}})
        log.info("tenant_settings_changed", tenant_id=tenant_id, actor=actor, reason=reason,
                 keys=sorted(changed), created=created)
    session.flush()
    return SettingsChange(tenant_id, after_settings, changed, created)


def _apply(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = copy.deepcopy(dict(stored))
    for key, value in changes.items():
        if not isinstance(key, str) or not key.strip():
            raise ValidationError("settings", f"a setting name must be a non-empty string, "
                                  f"got {key!r}")
        head, dot, rest = key.partition(".")
        if dot:
            if head not in _NESTED or not rest:
                raise ValidationError(f"settings.{key}", "unknown setting")
            inner = merged.get(head)
            inner = dict(inner) if isinstance(inner, Mapping) else {}
            if value is None:
                inner.pop(rest, None)
            else:
                inner[rest] = value
            merged[head] = inner
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = get_tenant(session, tenant_id) if isinstance(tenant_id, str) else None
    if tenant is None:
        raise NotFoundError(f"tenant {tenant_id!r} does not exist")
    return tenant


__all__ = ["SettingsChange", "change_tenant_settings", "counts_today", "flatten_settings",
           "read_tenant_settings"]
