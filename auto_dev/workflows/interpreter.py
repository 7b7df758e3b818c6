"""The workflow interpreter: runs a validated document as data, bounded, and returns a trace.

::

    interpreter = WorkflowInterpreter(SandboxToolInvoker(sandbox, tools), llm=client)
    run = await interpreter.run(doc, {"order_id": "A1"}, seed=7)
    run.ok, run.output, run.trace

What a user relies on:

* A document is validated when the run starts, against the tools the invoker has and the custom
  kinds registered here: a generated workflow can only use those. An invalid document or input
  raises :class:`~auto_dev.ValidationError` (input fields are named ``input.<field>``); nothing
  else raises. A tool that fails, a timeout, a limit reached, a hook that raises: the run ends
  with ``ok=False`` and ``error`` saying what and ``error_step`` where.
* Every run is bounded by :class:`RunLimits` (the document's own ``limits`` can only tighten
  them): steps executed, map items, nesting depth, wall time, LLM tokens and cost.
* Step semantics (see ``_runner.py``): ``when`` skips, ``retry`` re-runs on ``error`` and/or
  ``timeout`` with exponential backoff (``backoff_s * 2**(attempt-1)``), ``timeout_s`` bounds
  each attempt, ``catch`` recovers (its last output becomes the step's; the failure is visible
  as ``error`` in the state while it runs). A ``fail`` step is never retried.
* A tool step's ``timeout_s`` is the sandbox's time limit for the call; without one, the call
  may use what is left of the run's wall time.
* Scopes: switch branches and catch blocks share their step's scope; each map item runs in a
  child scope whose ``steps`` and ``vars`` start as copies of the outer ones and are dropped
  after the item (items never race on them; a map's output is the list of the items' last
  outputs).
* Tool calls get a seed derived from ``(run seed, step id, map item indexes, attempt)`` with
  SHA-256, so a run with the same seed makes the same calls with the same seeds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from auto_dev._exceptions import ValidationError
from auto_dev.abc import ToolInvoker
from auto_dev.workflows._document import BUILTIN_STEP_KINDS, CUSTOM_STEP_KEY
from auto_dev.workflows._expressions import ExpressionError, evaluate
from auto_dev.workflows._trace import WorkflowRun
from auto_dev.workflows.schema import DEFAULT_MAX_DEPTH, validate_workflow

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunLimits:
    """The bounds of one run. A document's ``limits`` may lower any of them, never raise one."""

    max_steps: int = 200
    max_map_items: int = 100
    max_depth: int = DEFAULT_MAX_DEPTH
    wall_time_s: float = 60.0
    max_tokens: int = 100_000
    max_cost_usd: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_map_items", "max_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"limits.{name}", f"must be an integer >= 1, got {value!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or self.max_tokens < 0:
            raise ValidationError("limits.max_tokens", "must be an integer >= 0")
        for name, low_open in (("wall_time_s", True), ("max_cost_usd", False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0 or (low_open and value == 0):
                raise ValidationError(f"limits.{name}", f"must be a finite number "
                                      f"{'> 0' if low_open else '>= 0'}, got {value!r}")

    def tightened(self, overrides: Mapping[str, Any] | None) -> RunLimits:
        """These limits, lowered wherever ``overrides`` (a document's ``limits``) is lower."""
        if not overrides:
            return self
        changes = {name: min(getattr(self, name), value) for name, value in overrides.items()
                   if name in _LIMIT_FIELDS}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(RunLimits))


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a custom kind or a hook learns about the step at hand.

    ``state`` is the run state the step sees (``input``, ``steps``, ``vars``, ``item``): read it,
    do not change it. ``seed`` is the step's derived seed for this attempt; ``item_path`` the
    indexes of the map items it runs under (outermost first).
    """

    step_id: str
    kind: str
    step: dict[str, Any]
    state: dict[str, Any]
    seed: int
    attempt: int
    item_path: tuple[int, ...]
    tenant_id: str | None


#: A custom step kind: ``(resolved args, context) -> output`` (JSON), sync or async.
CustomKind = Callable[[dict[str, Any], StepContext], Any]


class StepKinds:
    """Trusted custom step kinds, by name: ``{"id": ..., "custom": "<name>", "args": {...}}``.

    ::

        kinds = StepKinds()

        @kinds.register("shout")
        async def shout(args, ctx):
            return str(args["text"]).upper()
    """

    def __init__(self, kinds: Mapping[str, CustomKind] | None = None) -> None:
        self._kinds: dict[str, CustomKind] = {}
        for name, fn in (kinds or {}).items():
            self.register(name, fn)

    def register(self, name: str, fn: CustomKind | None = None) -> Any:
        """Register ``fn`` as kind ``name`` (or, without ``fn``, return a decorator)."""
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise ValidationError("kind", f"{name!r} is not an identifier")
        if name in BUILTIN_STEP_KINDS or name == CUSTOM_STEP_KEY:
            raise ValidationError("kind", f"{name!r} is a built-in step kind")
        if fn is None:
            def decorator(func: CustomKind) -> CustomKind:
                self.register(name, func)
                return func
            return decorator
        if not callable(fn):
            raise ValidationError(f"kind.{name}", "must be callable")
        if name in self._kinds:
            raise ValidationError("kind", f"{name!r} is already registered")
        self._kinds[name] = fn
        return fn

    def names(self) -> frozenset[str]:
        return frozenset(self._kinds)

    def get(self, name: str) -> CustomKind | None:
        return self._kinds.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds


#: A hook: called with the step's context (and its trace, or its error), sync or async.
Hook = Callable[..., Awaitable[Any] | Any]


@dataclass(frozen=True, slots=True)
class WorkflowHooks:
    """Observers around every step (trusted code, as agent platforms register them).

    * ``before_step(ctx)``: before the step (also before its ``when`` is evaluated);
    * ``after_step(ctx, trace)``: after it, skipped or not, with its :class:`StepTrace`;
    * ``on_error(ctx, error)``: when it failed (retries spent), before its ``catch`` runs.

    A hook that raises ends the run with ``ok=False`` (fail closed): a hook can veto, never
    crash the caller.
    """

    before_step: Hook | None = None
    after_step: Hook | None = None
    on_error: Hook | None = None


def derive_seed(seed: int, step_id: str, item_path: tuple[int, ...], attempt: int) -> int:
    """The seed of one tool call: stable across processes (SHA-256, never ``hash()``)."""
    key = f"{seed}\x1f{step_id}\x1f{'/'.join(map(str, item_path))}\x1f{attempt}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


class WorkflowInterpreter:
    """Runs workflow documents with ``tools``, an optional LLM client, custom ``kinds`` and
    ``hooks``, within ``limits``. One interpreter may run many documents, concurrently."""

    def __init__(self, tools: ToolInvoker, *, llm: Any = None, kinds: StepKinds | None = None,
                 hooks: WorkflowHooks | None = None, limits: RunLimits | None = None,
                 tenant_id: str | None = None) -> None:
        self.tools = tools
        self.llm = llm
        self.kinds = kinds if kinds is not None else StepKinds()
        self.hooks = hooks if hooks is not None else WorkflowHooks()
        self.limits = limits if limits is not None else RunLimits()
        self.tenant_id = tenant_id

    def validate(self, doc: Any) -> dict[str, Any]:
        """``doc`` validated against this interpreter's tools, kinds and depth limit."""
        return validate_workflow(doc, tools=self.tools.names(), kinds=self.kinds.names(),
                                 max_depth=self.limits.max_depth)

    async def run(self, doc: Any, input: Any, *, seed: int = 0) -> WorkflowRun:
        """Run ``doc`` on ``input``; see the module docstring for what may raise."""
        from auto_dev.workflows._runner import Abort, RunState, StepFailure

        definition = self.validate(doc)
        run_input = check_input(definition, input)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValidationError("seed", f"must be an integer, got {seed!r}")
        limits = self.limits.tightened(definition.get("limits"))
        run = RunState(self, definition, limits, seed)
        started = time.perf_counter()
        state: dict[str, Any] = {"input": run_input, "steps": {}, "vars": {}, "item": None}
        error: str | None = None
        error_step: str | None = None
        output: Any = None
        unfinished = "interrupted"
        try:
            async with asyncio.timeout(limits.wall_time_s):
                await run.block(definition["steps"], state, run.root, (), 0)
        except TimeoutError:
            error = (f"limit wall_time_s reached: the run took longer than "
                     f"{limits.wall_time_s:g}s")
            error_step, unfinished = run.last_step, "stopped: wall time limit"
        except StepFailure as failure:
            error, error_step = failure.message, failure.step_id
        except Abort as abort:
            error, error_step = abort.message, abort.step_id
            unfinished = f"stopped: {abort.message}"
        except Exception as exc:  # a bug of ours or of a trusted plugin: fail closed
            log.exception("workflow_run_crashed", workflow=definition.get("name"))
            error, error_step = f"internal error: {type(exc).__name__}: {exc}", run.last_step
        if error is None and "output" in definition:
            try:
                output = evaluate(definition["output"], state)
            except ExpressionError as exc:
                error = f"output: {exc}"
        trace = tuple(node.freeze(unfinished) for node in run.root)
        result = WorkflowRun(
            ok=error is None, output=output if error is None else None, error=error,
            error_step=error_step, trace=trace, steps_executed=run.steps_executed,
            seconds=time.perf_counter() - started, cost_usd=run.cost_usd, tokens=run.tokens)
        log.info("workflow_run", workflow=definition.get("name"), ok=result.ok,
                 error=error, error_step=error_step, steps=run.steps_executed,
                 seconds=round(result.seconds, 3))
        return result


def check_input(definition: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """A JSON copy of the run's ``input`` once it has what ``definition["input"]`` asks for."""
    if not isinstance(value, dict):
        raise ValidationError("input", f"must be a JSON object, got {type(value).__name__}")
    try:
        copy = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError("input", f"is not JSON: {exc}") from None
    spec = definition.get("input") or {}
    for name in spec.get("required", ()):
        if name not in copy:
            raise ValidationError(f"input.{name}", "is required")
    properties = spec.get("properties")
    if properties:
        error = best_match(Draft202012Validator(
            {"type": "object", "properties": properties}).iter_errors(copy))
        if error is not None:
            where = ".".join(["input", *(str(p) for p in error.absolute_path)])
            raise ValidationError(where, error.message)
    return dict(copy)
