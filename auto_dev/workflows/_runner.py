"""Running the steps of one workflow run (the interpreter's engine room).

Two exceptions travel up the step tree: :class:`StepFailure` (a step failed; an enclosing
step's ``retry`` or ``catch`` may handle it) and :class:`Abort` (a limit was reached or a hook
raised; nothing handles it, the run ends). Scopes: a switch branch and a catch block run in the
scope of their step; each map item runs in a child scope whose ``steps`` and ``vars`` start as
copies of the outer ones (so items never race on them) and are dropped after the item.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from typing import TYPE_CHECKING, Any

from auto_dev._exceptions import AutoDevError, LLMTimeoutError, ToolCallError, ToolTimeoutError
from auto_dev.workflows._document import step_kind
from auto_dev.workflows._expressions import (
    ExpressionError,
    evaluate,
    is_truthy,
    render_text,
    resolve,
)
from auto_dev.workflows._trace import TraceNode

if TYPE_CHECKING:
    from auto_dev.workflows.interpreter import RunLimits, StepContext, WorkflowInterpreter

#: Map items run at once when a map sets no ``max_concurrency``.
DEFAULT_MAP_CONCURRENCY = 4
#: Extra time a tool step's own ``timeout_s`` allows the sandbox to report its timeout itself.
TOOL_TIMEOUT_GRACE_S = 1.0

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)


class StepFailure(Exception):
    """Step ``step_id`` failed. ``category``: ``error``, ``timeout`` (both retryable when the
    step's ``retry.on`` says so) or ``fail`` (a ``fail`` step: never retried)."""

    def __init__(self, message: str, step_id: str, category: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.step_id = step_id
        self.category = category


class Abort(Exception):
    """The run must end now: a limit was reached or a hook raised."""

    def __init__(self, message: str, step_id: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.step_id = step_id


class RunState:
    """The mutable side of one run: counters, the trace being built, the deadline."""

    def __init__(self, interpreter: WorkflowInterpreter, definition: dict[str, Any],
                 limits: RunLimits, seed: int) -> None:
        self.interpreter = interpreter
        self.definition = definition
        self.limits = limits
        self.seed = seed
        self.root: list[TraceNode] = []
        self.steps_executed = 0
        self.cost_usd = 0.0
        self.tokens = 0
        self.last_step: str | None = None
        self.deadline = time.monotonic() + limits.wall_time_s

    # -- blocks and steps -------------------------------------------------------------------------

    async def block(self, steps: list[dict[str, Any]], state: dict[str, Any],
                    nodes: list[TraceNode], item_path: tuple[int, ...], depth: int) -> Any:
        """Run ``steps`` in order; the output of the last one that ran (not skipped)."""
        last = None
        for step in steps:
            ran, output = await self.step(step, state, nodes, item_path, depth)
            if ran:
                last = output
        return last

    async def step(self, step: dict[str, Any], state: dict[str, Any], nodes: list[TraceNode],
                   item_path: tuple[int, ...], depth: int) -> tuple[bool, Any]:
        """Run one step with its ``when``, ``retry``, ``timeout_s`` and ``catch``; returns
        whether it ran and its output (stored at ``steps.<id>``)."""
        step_id, kind = step["id"], step_kind(step)
        node = TraceNode(step_id, kind)
        nodes.append(node)
        self.last_step = step_id
        if depth > self.limits.max_depth:
            raise Abort(f"limit max_depth reached: step {step_id!r} is nested {depth} deep "
                        f"(max {self.limits.max_depth})", step_id)
        ctx = self.context(step, state, item_path, 0)
        await self._hook("before_step", step_id, ctx)
        try:
            if "when" in step and not is_truthy(self._expr(step["when"], state, step_id, "when")):
                node.skipped = True
                state["steps"][step_id] = None
                node.finish()
                await self._after_step(ctx, node)
                return False, None
            output = await self._attempts(step, kind, state, node, item_path, depth)
        except StepFailure as failure:
            node.error = failure.message
            await self._hook("on_error", step_id, ctx, failure.message)
            if "catch" not in step:
                node.finish()
                await self._after_step(ctx, node)
                raise
            try:
                output = await self._catch(step, failure, state, node, item_path, depth)
            except StepFailure:
                await self._after_step(ctx, node)
                raise
        state["steps"][step_id] = output
        node.output = output
        node.finish()
        await self._after_step(ctx, node)
        return True, output

    async def _attempts(self, step: dict[str, Any], kind: str, state: dict[str, Any],
                        node: TraceNode, item_path: tuple[int, ...], depth: int) -> Any:
        step_id = step["id"]
        if self.steps_executed >= self.limits.max_steps:
            raise Abort(f"limit max_steps reached: {self.limits.max_steps} steps executed, "
                        f"step {step_id!r} would exceed it", step_id)
        self.steps_executed += 1
        retry = step.get("retry") or {}
        max_attempts = int(retry.get("max_attempts", 1))
        backoff_s = float(retry.get("backoff_s", 0.0))
        retry_on = set(retry.get("on", ("error", "timeout")))
        timeout_s = step.get("timeout_s")
        earlier: list[TraceNode] = []  # the nested traces of failed attempts, kept in order
        for attempt in range(1, max_attempts + 1):
            node.attempts = attempt
            node.children = [*earlier]
            work = self._execute(step, kind, state, node, item_path, depth, attempt)
            try:
                if timeout_s is None:
                    return await work
                grace = TOOL_TIMEOUT_GRACE_S if kind == "tool" else 0.0
                return await asyncio.wait_for(work, timeout_s + grace)
            except TimeoutError:
                failure = StepFailure(f"step {step_id!r} timed out after {timeout_s:g}s "
                                      "(timeout_s)", step_id, "timeout")
            except StepFailure as exc:
                failure = exc
            node.error = failure.message
            if attempt == max_attempts or failure.category not in retry_on:
                raise failure
            nested = node.children[len(earlier):]
            if nested:
                gone = TraceNode(f"{step_id}.attempt{attempt}", "attempt", attempts=attempt,
                                 error=failure.message, children=nested, started=nested[0].started)
                gone.finish()
                earlier.append(gone)
            delay = backoff_s * 2 ** (attempt - 1)
            if delay:
                await asyncio.sleep(delay)  # the run's wall-time limit still applies
            node.error = None
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _execute(self, step: dict[str, Any], kind: str, state: dict[str, Any],
                       node: TraceNode, item_path: tuple[int, ...], depth: int,
                       attempt: int) -> Any:
        if kind == "tool":
            return await self._tool(step, state, node, item_path, attempt)
        if kind == "llm":
            return await self._llm(step, state, node)
        if kind == "set":
            values = self._resolve(step["set"], state, step["id"], "set")
            node.input = values
            state["vars"].update(values)
            return values
        if kind == "fail":
            message = self._text(step["fail"], state, step["id"], "fail")
            node.input = message
            raise StepFailure(message, step["id"], "fail")
        if kind == "switch":
            return await self._switch(step, state, node, item_path, depth)
        if kind == "map":
            return await self._map(step, state, node, item_path, depth)
        return await self._custom(step, kind, state, node, item_path, attempt)

    # -- kinds ------------------------------------------------------------------------------------

    async def _tool(self, step: dict[str, Any], state: dict[str, Any], node: TraceNode,
                    item_path: tuple[int, ...], attempt: int) -> Any:
        from auto_dev.workflows.interpreter import derive_seed

        step_id, tool = step["id"], step["tool"]
        args = self._resolve(step.get("args", {}), state, step_id, "args")
        node.input = args
        # Without its own timeout_s a tool may use what is left of the run's wall time.
        remaining = max(self.deadline - time.monotonic(), 0.001)
        timeout_s = min(step.get("timeout_s") or remaining, remaining)
        seed = derive_seed(self.seed, step_id, item_path, attempt)
        try:
            output = await self.interpreter.tools.invoke(tool, args, timeout_s=timeout_s,
                                                         seed=seed)
        except ToolTimeoutError as exc:
            raise StepFailure(str(exc), step_id, "timeout") from None
        except ToolCallError as exc:
            raise StepFailure(str(exc), step_id) from None
        except Exception as exc:  # a user's invoker broke its contract: still the step's error
            raise StepFailure(f"tool {tool!r} raised {type(exc).__name__}: {exc}", step_id
                              ) from None
        return _json_value(output, f"tool {tool!r}", step_id)

    async def _llm(self, step: dict[str, Any], state: dict[str, Any], node: TraceNode) -> Any:
        step_id, spec = step["id"], step["llm"]
        llm = self.interpreter.llm
        if llm is None:
            raise StepFailure("no LLM is configured (offline): an llm step needs a model "
                              "client, WorkflowInterpreter(llm=...)", step_id)
        messages = []
        if "system" in spec:
            messages.append({"role": "system",
                             "content": self._text(spec["system"], state, step_id, "llm.system")})
        messages.append({"role": "user",
                         "content": self._text(spec["prompt"], state, step_id, "llm.prompt")})
        node.input = {"prompt": messages[-1]["content"]}
        if len(messages) == 2:
            node.input["system"] = messages[0]["content"]
        if self.tokens >= self.limits.max_tokens:
            raise Abort(f"limit max_tokens reached: {self.tokens} tokens used "
                        f"(max {self.limits.max_tokens})", step_id)
        try:
            response = await llm.complete(
                messages, tenant_id=self.interpreter.tenant_id, purpose="workflow_step",
                model=spec.get("model"), max_tokens=spec.get("max_tokens"))
        except LLMTimeoutError as exc:
            raise StepFailure(f"llm timed out: {exc}", step_id, "timeout") from None
        except AutoDevError as exc:
            raise StepFailure(f"llm failed: {type(exc).__name__}: {exc}", step_id) from None
        except Exception as exc:  # a client that broke its contract: the step's error
            raise StepFailure(f"llm raised {type(exc).__name__}: {exc}", step_id) from None
        tokens = int(response.prompt_tokens) + int(response.completion_tokens)
        cost = float(response.cost_usd)
        self.tokens += tokens
        self.cost_usd += cost
        node.tokens += tokens
        node.cost_usd += cost
        if self.tokens > self.limits.max_tokens:
            raise Abort(f"limit max_tokens reached: {self.tokens} tokens used "
                        f"(max {self.limits.max_tokens})", step_id)
        if self.cost_usd > self.limits.max_cost_usd:
            raise Abort(f"limit max_cost_usd reached: ${self.cost_usd:.4f} spent "
                        f"(max ${self.limits.max_cost_usd:g})", step_id)
        if spec.get("output", "text") == "json":
            return parse_json_answer(response.text, step_id)
        return response.text

    async def _switch(self, step: dict[str, Any], state: dict[str, Any], node: TraceNode,
                      item_path: tuple[int, ...], depth: int) -> Any:
        step_id = step["id"]
        for index, branch in enumerate(step["switch"]):
            if "otherwise" in branch:
                node.input = {"branch": "otherwise"}
                return await self.block(branch["otherwise"], state, node.children, item_path,
                                        depth + 1)
            if is_truthy(self._expr(branch["when"], state, step_id, f"switch[{index}].when")):
                node.input = {"branch": index}
                return await self.block(branch["steps"], state, node.children, item_path,
                                        depth + 1)
        node.input = {"branch": None}
        return None

    async def _map(self, step: dict[str, Any], state: dict[str, Any], node: TraceNode,
                   item_path: tuple[int, ...], depth: int) -> list[Any]:
        step_id, spec = step["id"], step["map"]
        items = self._expr(spec["over"], state, step_id, "map.over")
        if not isinstance(items, list):
            raise StepFailure(f"map.over {spec['over']!r} gave {type(items).__name__}, not a "
                              "list", step_id)
        if len(items) > self.limits.max_map_items:
            raise Abort(f"limit max_map_items reached: step {step_id!r} maps over "
                        f"{len(items)} items (max {self.limits.max_map_items})", step_id)
        node.input = items
        name = spec.get("as", "item")
        gate = asyncio.Semaphore(spec.get("max_concurrency", DEFAULT_MAP_CONCURRENCY))
        item_nodes = [TraceNode(f"{step_id}[{i}]", "item", input=item)
                      for i, item in enumerate(items)]
        node.children.extend(item_nodes)

        async def one(index: int, item: Any) -> Any:
            async with gate:
                item_node = item_nodes[index]
                item_node.started, item_node.attempts = time.perf_counter(), 1
                scope = {**state, "steps": dict(state["steps"]), "vars": dict(state["vars"]),
                         "item": item, name: item}
                try:
                    output = await self.block(spec["steps"], scope, item_node.children,
                                              (*item_path, index), depth + 1)
                except StepFailure as failure:
                    item_node.error = failure.message
                    item_node.finish()
                    raise
                item_node.output = output
                item_node.finish()
                return output

        tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    exc = task.exception()
                    if exc is not None and not isinstance(exc, StepFailure):
                        raise exc  # a limit or a hook: stop the other items now
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Every item ran: report the first failing item by index, whatever finished first.
        for task in tasks:
            exc = task.exception()
            if exc is not None:
                raise exc
        return [task.result() for task in tasks]

    async def _custom(self, step: dict[str, Any], kind: str, state: dict[str, Any],
                      node: TraceNode, item_path: tuple[int, ...], attempt: int) -> Any:
        step_id = step["id"]
        fn = self.interpreter.kinds.get(kind)
        if fn is None:  # validation refuses this; a registry changed during the run
            raise StepFailure(f"unknown step kind {kind!r}", step_id)
        args = self._resolve(step.get("args", {}), state, step_id, "args")
        node.input = args
        try:
            result = fn(args, self.context(step, state, item_path, attempt))
            if inspect.isawaitable(result):
                result = await result
        except TimeoutError as exc:
            raise StepFailure(f"custom kind {kind!r} timed out: {exc}", step_id, "timeout"
                              ) from None
        except Exception as exc:
            raise StepFailure(f"custom kind {kind!r} raised {type(exc).__name__}: {exc}",
                              step_id) from None
        return _json_value(result, f"custom kind {kind!r}", step_id)

    async def _catch(self, step: dict[str, Any], failure: StepFailure, state: dict[str, Any],
                     node: TraceNode, item_path: tuple[int, ...], depth: int) -> Any:
        catch_node = TraceNode(f"{step['id']}.catch", "catch", attempts=1,
                               input={"step": failure.step_id, "error": failure.message})
        node.children.append(catch_node)
        had_error, outer_error = "error" in state, state.get("error")
        state["error"] = {"step": failure.step_id, "message": failure.message}
        try:
            output = await self.block(step["catch"], state, catch_node.children, item_path,
                                      depth + 1)
        except StepFailure as again:
            catch_node.error = again.message
            catch_node.finish()
            node.finish()
            raise
        finally:
            if had_error:
                state["error"] = outer_error
            else:
                state.pop("error", None)
        catch_node.output = output
        catch_node.finish()
        return output

    # -- helpers ----------------------------------------------------------------------------------

    def context(self, step: dict[str, Any], state: dict[str, Any], item_path: tuple[int, ...],
                attempt: int) -> StepContext:
        from auto_dev.workflows.interpreter import StepContext, derive_seed

        return StepContext(step_id=step["id"], kind=step_kind(step), step=step, state=state,
                           seed=derive_seed(self.seed, step["id"], item_path, attempt),
                           attempt=attempt, item_path=item_path,
                           tenant_id=self.interpreter.tenant_id)

    async def _after_step(self, ctx: StepContext, node: TraceNode) -> None:
        if self.interpreter.hooks.after_step is not None:  # freezing costs: only when observed
            await self._hook("after_step", ctx.step_id, ctx, node.freeze())

    async def _hook(self, name: str, step_id: str, *args: Any) -> None:
        hook = getattr(self.interpreter.hooks, name)
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # fail closed: a broken hook stops the run, not the caller
            raise Abort(f"hook {name} failed on step {step_id!r}: {type(exc).__name__}: {exc}",
                        step_id) from exc

    @staticmethod
    def _expr(text: str, state: dict[str, Any], step_id: str, field: str) -> Any:
        try:
            return evaluate(text, state)
        except ExpressionError as exc:
            raise StepFailure(f"{field}: {exc}", step_id) from None

    @staticmethod
    def _resolve(value: Any, state: dict[str, Any], step_id: str, field: str) -> Any:
        try:
            return resolve(value, state)
        except ExpressionError as exc:
            raise StepFailure(f"{field}: {exc}", step_id) from None

    @staticmethod
    def _text(text: str, state: dict[str, Any], step_id: str, field: str) -> str:
        try:
            return render_text(text, state)
        except ExpressionError as exc:
            raise StepFailure(f"{field}: {exc}", step_id) from None


def parse_json_answer(text: str, step_id: str) -> Any:
    """A model's JSON answer: bare, or in a ```json fence (the first one)."""
    candidates = [text.strip()]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.insert(0, fenced.group(1).strip())
    problem = "empty answer"
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return json.loads(candidate, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            problem = str(exc)
    preview = text.strip()[:80]
    raise StepFailure(f"llm answer is not JSON ({problem}): {preview!r}", step_id)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_value(value: Any, what: str, step_id: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StepFailure(f"{what} returned a value that is not JSON: {exc}", step_id) from None
    return value
