"""The subscription registry of :class:`auto_dev.events.EventBus` (a mixin).

Handlers are registered by name; the name (``module.qualname`` unless given) is what stored
deliveries point at, so it must stay the same across restarts.

Every subscription has a tenant scope: one tenant's events, or every tenant's
(:data:`ALL_TENANTS`, for the framework's own handlers). Deliveries are created and claimed only
for handlers whose scope covers the event's tenant, so two processes that use one handler name
for different tenants never receive each other's events.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from auto_dev._event_types import Event, SkillExecuted, TaskFailed, TaskSucceeded
from auto_dev._exceptions import ValidationError

log = structlog.get_logger("auto_dev.events")

Handler = Callable[[Any], Awaitable[None] | None]
H = TypeVar("H", bound=Callable[..., Any])

_HANDLER_NAME_MAX = 300
#: The scope of a handler that receives every tenant's events.
ALL_TENANTS = "*"


def _log(level: str, message: str, **fields: Any) -> None:
    """Log without letting a broken logging setup (say, a closed stream) break the bus."""
    with contextlib.suppress(Exception):
        getattr(log, level)(message, **fields)


@dataclass
class Subscription:
    name: str
    handler: Callable[..., Any]
    event_types: set[type[Event]]
    is_async: bool
    tenant: str = ALL_TENANTS

    def covers(self, tenant_id: str) -> bool:
        return self.tenant == ALL_TENANTS or self.tenant == tenant_id


def _is_async_callable(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - a callable object's method
    return call is not None and inspect.iscoroutinefunction(call)


def _default_name(handler: Callable[..., Any]) -> str:
    target: Any = handler
    qualname = getattr(target, "__qualname__", None)
    if qualname is None and not isinstance(handler, functools.partial):
        target = type(handler)  # a callable object: name it by its class
        qualname = target.__qualname__
    module = getattr(target, "__module__", None)
    if qualname is None or module is None or "<lambda>" in qualname:
        raise ValidationError(
            "name", f"cannot derive a stable name for handler {handler!r}: pass name=..."
        )
    return f"{module}.{qualname}"


def _event_classes(event_cls: Any) -> list[type[Event]]:
    """``TaskFailed`` -> [TaskFailed]; ``TaskFailed | TaskSucceeded`` (``TaskEvent``) -> both."""
    if typing.get_origin(event_cls) in (types.UnionType, typing.Union):
        members = typing.get_args(event_cls)
    else:
        members = (event_cls,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Event)):
            raise ValidationError("event_cls", f"must be an Event subclass, got {member!r}")
    return list(members)


class SubscriptionRegistry:
    """subscribe / decorators / unsubscribe / lookup, shared by the bus."""

    def __init__(self, default_tenant: str = ALL_TENANTS) -> None:
        self._subs: dict[str, Subscription] = {}
        #: The scope of a subscription that names none.
        self.default_tenant = default_tenant

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, event_cls: Any, handler: H, *, name: str | None = None,
                  tenant: str | None = None) -> H:
        """Call ``handler(event)`` for every event of ``event_cls`` (or a subclass) from now on.

        ``tenant`` scopes it to one tenant's events (default: the bus's ``default_tenant``);
        :data:`ALL_TENANTS` (``"*"``) receives every tenant's.

        ``event_cls`` may be a union such as :data:`TaskEvent`. ``handler`` may be async or sync
        (sync handlers run in a worker thread). ``name`` (default ``module.qualname``) must be
        stable across restarts: pending deliveries are matched to handlers by it. Subscribing
        the same handler under the same name again adds event classes; a different handler
        under a taken name is refused. Returns ``handler``, so this works as a decorator helper.
        """
        if not callable(handler):
            raise ValidationError("handler", f"must be callable, got {handler!r}")
        classes = _event_classes(event_cls)
        key = name if name is not None else _default_name(handler)
        if not isinstance(key, str) or not key.strip() or len(key) > _HANDLER_NAME_MAX:
            raise ValidationError("name", f"must be 1-{_HANDLER_NAME_MAX} characters, got {key!r}")
        scope = self.default_tenant if tenant is None else tenant
        if not isinstance(scope, str) or not scope.strip():
            raise ValidationError("tenant", f"must be a tenant id or {ALL_TENANTS!r}")
        current = self._subs.get(key)
        if current is not None and current.handler != handler:
            raise ValidationError(
                "name",
                f"{key!r} is already subscribed by {current.handler!r}; pass a different name=",
            )
        if current is not None and current.tenant != scope:
            raise ValidationError(
                "tenant", f"{key!r} is already subscribed for tenant {current.tenant!r}")
        if current is None:
            current = Subscription(key, handler, set(), _is_async_callable(handler), scope)
            self._subs[key] = current
        current.event_types.update(classes)
        _log("debug", "handler subscribed", handler=key, events=[c.type_name for c in classes])
        return handler

    def on(self, event_cls: Any, *, name: str | None = None,
           tenant: str | None = None) -> Callable[[H], H]:
        """Decorator form of :meth:`subscribe`: ``@bus.on(TaskFailed)``."""

        def decorate(handler: H) -> H:
            return self.subscribe(event_cls, handler, name=name, tenant=tenant)

        return decorate

    def on_task_fail(self, handler: H | None = None, *, name: str | None = None,
                     tenant: str | None = None) -> Any:
        """``@bus.on_task_fail``, ``@bus.on_task_fail(name=...)`` or ``bus.on_task_fail(fn)``."""
        return self._decorator(TaskFailed, handler, name, tenant)

    def on_task_success(self, handler: H | None = None, *, name: str | None = None,
                        tenant: str | None = None) -> Any:
        """Subscribe to :class:`TaskSucceeded` (same forms as :meth:`on_task_fail`)."""
        return self._decorator(TaskSucceeded, handler, name, tenant)

    def on_skill_execution(self, handler: H | None = None, *, name: str | None = None,
                           tenant: str | None = None) -> Any:
        """Subscribe to :class:`SkillExecuted` (same forms as :meth:`on_task_fail`)."""
        return self._decorator(SkillExecuted, handler, name, tenant)

    def _decorator(self, event_cls: type[Event], handler: H | None, name: str | None,
                   tenant: str | None) -> Any:
        if handler is None:
            return self.on(event_cls, name=name, tenant=tenant)
        return self.subscribe(event_cls, handler, name=name, tenant=tenant)

    def unsubscribe(self, handler: Callable[..., Any] | str, event_cls: Any = None) -> bool:
        """Stop delivering to ``handler`` (a callable or its name), for ``event_cls`` or for all.

        Deliveries already recorded for it stay in the outbox and are delivered if a handler
        of that name subscribes again. Returns whether anything was removed.
        """
        if isinstance(handler, str):
            keys = [handler] if handler in self._subs else []
        else:
            keys = [k for k, s in self._subs.items() if s.handler == handler]
        removed = False
        for key in keys:
            sub = self._subs[key]
            if event_cls is None:
                del self._subs[key]
                removed = True
                continue
            for cls in _event_classes(event_cls):
                if cls in sub.event_types:
                    sub.event_types.discard(cls)
                    removed = True
            if not sub.event_types:
                del self._subs[key]
        return removed

    def subscribers(self, event_cls: type[Event], tenant_id: str | None = None) -> list[str]:
        """Names of the handlers an event of ``event_cls`` (of ``tenant_id``; ``None``: any
        tenant) is delivered to, sorted."""
        return sorted(
            name
            for name, sub in self._subs.items()
            if any(issubclass(event_cls, t) for t in sub.event_types)
            and (tenant_id is None or sub.covers(tenant_id))
        )

    def scopes(self) -> dict[str, str]:
        """Each handler's tenant scope (a tenant id or :data:`ALL_TENANTS`)."""
        return {name: sub.tenant for name, sub in self._subs.items()}

    @property
    def handler_names(self) -> list[str]:
        return sorted(self._subs)
