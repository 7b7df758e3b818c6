"""The engine registry: engines registered in code or installed as ``auto_dev.engines`` plugins."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev._event_types import Event
from auto_dev._exceptions import EngineError
from auto_dev._subscriptions import ALL_TENANTS
from auto_dev.abc import BaseLearningEngine
from auto_dev.queries import TenantView

if TYPE_CHECKING:
    from auto_dev.engines.base import EngineContext
    from auto_dev.events import EventBus
    from auto_dev.types import CycleRequest

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "auto_dev.engines"
_NAME = re.compile(r"^[a-z][a-z0-9_.\-]{0,99}$")


class EngineRegistry:
    """Holds the engines of one :class:`~auto_dev.AutoDev` and wires them to its event bus.

    Registering an engine binds it to the shared :class:`EngineContext` and subscribes a
    framework handler to every class in its ``subscriptions``, for every tenant, under the
    stable handler name ``engine:<name>`` (deliveries left pending by a crash find it again
    after a restart). The handler stays short: it lets the engine observe the event
    (:meth:`~auto_dev.abc.BaseLearningEngine.handle_event`), asks it which target the event
    concerns (:meth:`~auto_dev.abc.BaseLearningEngine.cycle_target`) and hands a cycle request
    to ``enqueue`` (the facade's durable queue); the cycle itself runs in the cycle worker.
    """

    def __init__(self, context: EngineContext, bus: EventBus,
                 enqueue: Callable[[CycleRequest], str] | None = None) -> None:
        self._context = context
        self._bus = bus
        self._engines: dict[str, BaseLearningEngine] = {}
        self.enqueue = enqueue

    def register(self, engine: BaseLearningEngine, *, replace: bool = False) -> BaseLearningEngine:
        """Register ``engine`` (an instance). Raises :class:`EngineError` if it is malformed."""
        if not isinstance(engine, BaseLearningEngine):
            raise EngineError(
                f"engines must be BaseLearningEngine instances, got {type(engine).__name__}"
            )
        name = getattr(engine, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise EngineError(
                f"engine {type(engine).__name__}: name must match {_NAME.pattern}, got {name!r}"
            )
        if not isinstance(engine.capability, str) or not engine.capability:
            raise EngineError(f"engine {name}: capability must be a non-empty string")
        subscriptions = tuple(engine.subscriptions)
        for cls in subscriptions:
            if not (isinstance(cls, type) and issubclass(cls, Event)):
                raise EngineError(
                    f"engine {name}: subscriptions must be Event classes, got {cls!r}"
                )
        if name in self._engines:
            if not replace:
                raise EngineError(f"an engine named {name!r} is already registered")
            self.unregister(name)
        gatekeeper = self._context.gatekeeper
        if gatekeeper.requirement(engine.capability) is None:
            gatekeeper.register_capability(engine.capability, engine.required_maturity)
        engine.bind(self._context)
        handler = self._event_handler(engine)
        for cls in subscriptions:
            self._bus.subscribe(cls, handler, name=f"engine:{name}", tenant=ALL_TENANTS)
        self._engines[name] = engine
        log.info("engine_registered", engine=name, capability=engine.capability,
                 subscriptions=[c.__name__ for c in subscriptions])
        return engine

    def _event_handler(self, engine: BaseLearningEngine) -> Callable[[Event], Awaitable[None]]:
        async def on_event(event: Event) -> None:
            await engine.handle_event(event)
            tenant = TenantView(self._context.database, event.tenant_id)
            target = engine.cycle_target(event, tenant)
            if target is None or self.enqueue is None or self._context.pipeline is None:
                return
            request = self._context.pipeline.request(
                engine.name, target, trigger="event", agent=getattr(event, "agent_id", None),
                tenant_id=event.tenant_id)
            job_id = await asyncio.to_thread(self.enqueue, request)
            log.info("cycle_queued", engine=engine.name, target=target,
                     tenant_id=event.tenant_id, job_id=job_id)

        on_event.__qualname__ = f"engine:{engine.name}"
        return on_event

    def unregister(self, name: str) -> None:
        engine = self._engines.pop(name, None)
        if engine is None:
            raise EngineError(f"no engine named {name!r} is registered")
        for cls in engine.subscriptions:
            self._bus.unsubscribe(f"engine:{name}", cls)

    def get(self, name: str) -> BaseLearningEngine:
        """The engine called ``name``; its capability's name (``memento_skills``,
        ``auto_dev.memento_skills``) is accepted too when one engine has it."""
        if name in self._engines:
            return self._engines[name]
        by_capability = [e for e in self._engines.values()
                         if name in (e.capability, e.capability.rsplit(".", 1)[-1])]
        if len(by_capability) == 1:
            return by_capability[0]
        known = ", ".join(sorted(self._engines)) or "none"
        raise EngineError(f"no engine named {name!r} (registered: {known})")

    def names(self) -> list[str]:
        return sorted(self._engines)

    def __iter__(self) -> Iterator[BaseLearningEngine]:
        return iter(list(self._engines.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._engines

    def __len__(self) -> int:
        return len(self._engines)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every engine installed under the ``auto_dev.engines`` entry-point group.

        An entry point may name an engine class (instantiated without arguments), a factory
        callable returning an engine, or an engine instance. A plugin that fails to load is
        logged and skipped: one broken plugin must not take the service down.
        """
        loaded: list[str] = []
        for ep in entry_points(group=group):
            try:
                obj: Any = ep.load()
                engine = _instantiate(obj)
                if engine.name in self._engines:
                    log.warning("engine_plugin_shadowed", entry_point=ep.name, engine=engine.name)
                    continue
                self.register(engine)
                loaded.append(engine.name)
            except Exception as exc:  # a broken plugin is isolated, not fatal
                log.error("engine_plugin_failed", entry_point=ep.name, error=str(exc))
        return loaded


def _instantiate(obj: Any) -> BaseLearningEngine:
    if isinstance(obj, BaseLearningEngine):
        return obj
    if isinstance(obj, type) and issubclass(obj, BaseLearningEngine):
        return obj()
    if callable(obj):
        factory: Callable[[], Any] = obj
        made = factory()
        if isinstance(made, BaseLearningEngine):
            return made
    raise EngineError(f"entry point object {obj!r} is not a learning engine")
