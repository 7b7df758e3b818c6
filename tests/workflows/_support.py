"""Shared by the workflow tests: an in-memory ToolInvoker and the issue's example document."""

from __future__ import annotations

import asyncio
import copy
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auto_dev._exceptions import ToolCallError, ToolTimeoutError
from auto_dev.abc import ToolInvoker


@dataclass(frozen=True)
class Call:
    """One call the fake received."""

    tool: str
    args: dict[str, Any]
    timeout_s: float | None
    seed: int


class FakeTools(ToolInvoker):
    """Tools as Python callables, run in-process (tests only: never for candidate code).

    A tool function may take a ``rng`` keyword: it gets a ``random.Random(seed)``, as a tool in
    the sandbox gets a seeded ``random``. Raising ``TimeoutError`` becomes ToolTimeoutError,
    any other exception ToolCallError, as the sandbox invoker reports them.
    """

    def __init__(self, **tools: Callable[..., Any]) -> None:
        self.tools = tools
        self.calls: list[Call] = []

    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    async def invoke(self, tool: str, args: dict[str, Any], *, timeout_s: float | None,
                     seed: int) -> Any:
        self.calls.append(Call(tool, copy.deepcopy(args), timeout_s, seed))
        fn = self.tools[tool]
        kwargs = dict(args)
        if "rng" in inspect.signature(fn).parameters:
            kwargs["rng"] = random.Random(seed)
        try:
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except TimeoutError as exc:
            raise ToolTimeoutError(tool, f"{tool!r} timed out: {exc}") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ToolCallError(tool, f"{tool!r} failed: {type(exc).__name__}: {exc}") from exc
        return result

    def called(self, tool: str) -> list[Call]:
        return [c for c in self.calls if c.tool == tool]


def issue_example() -> dict[str, Any]:
    """The workflow of issue 8, verbatim."""
    return {
        "name": "refund_request", "description": "...", "input": {"required": ["order_id"]},
        "steps": [
            {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"},
             "retry": {"max_attempts": 3, "backoff_s": 0.1, "on": ["error", "timeout"]},
             "timeout_s": 5},
            {"id": "route", "switch": [
                {"when": "steps.order.status == 'shipped'",
                 "steps": [{"id": "ret", "tool": "start_return",
                            "args": {"order": "${steps.order}"}}]},
                {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                                "args": {"order_id": "${input.order_id}"}}]}]},
            {"id": "notes", "map": {"over": "input.items", "as": "item", "max_concurrency": 4,
                                    "steps": [{"id": "n", "llm": {
                                        "prompt": "One line about ${item.name}.",
                                        "output": "text"}}]}},
            {"id": "reply", "llm": {"system": "You write short replies.",
                                    "prompt": "Order: ${steps.order}", "output": "json"},
             "catch": [{"id": "fallback", "set": {"reply": "We will get back to you."}}]}],
        "output": "steps.reply",
    }


def example_tools() -> FakeTools:
    return FakeTools(
        get_order=lambda order_id: {"id": order_id, "status": "shipped"},
        start_return=lambda order: {"returned": order["id"]},
        cancel_order=lambda order_id: {"cancelled": order_id},
    )


def workflow(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A document named ``t`` with ``steps``."""
    return {"name": "t", "steps": list(steps), **extra}
