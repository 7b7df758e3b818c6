"""The LLM health of one search run, for its result and the engines that report it.

A mutator that calls a model (:class:`~auto_dev.llm.mutator.LLMMutator`) counts its calls and
their failures by kind; :class:`LLMWatch` marks those counters when a run starts and reads the
difference when it ends, so a run reports its own LLM errors (a refused key, an unknown model,
an unreachable endpoint) even when its mutators outlive it. Mutators are duck-typed
(``health_mark()`` / ``health_report(since)``): the search does not depend on the LLM layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from auto_dev.llm.health import HealthMark, LLMHealthReport


@runtime_checkable
class HealthReporting(Protocol):
    """A mutator that keeps an LLM health record."""

    def health_mark(self) -> HealthMark: ...

    def health_report(self, since: HealthMark | None = None) -> LLMHealthReport: ...


class LLMWatch:
    """Marks the LLM mutators among ``mutators`` now; :meth:`report` gives what happened since."""

    def __init__(self, mutators: Iterable[Any]) -> None:
        self._marks = [(m, m.health_mark()) for m in mutators if isinstance(m, HealthReporting)]

    def report(self) -> LLMHealthReport | None:
        """The LLM calls since the marks, merged over the LLM mutators; ``None`` without any."""
        merged: LLMHealthReport | None = None
        for mutator, mark in self._marks:
            report = mutator.health_report(mark)
            merged = report if merged is None else merged.merged(report)
        return merged
