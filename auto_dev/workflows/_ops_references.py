"""The offline operator that re-points a reference that is not a step argument (a map's
``over`` list, the workflow's ``output``).

:class:`~auto_dev.workflows.operators.RepointArgument` re-points ``${path}`` values in a step's
``args`` and ``set``. Two other places read the state by path and go wrong the same way in real
workflows: a ``map`` over the wrong list and an ``output`` that returns the wrong step. This
operator proposes the state paths seen in traces (and the steps' outputs) for those, lists first
for a map, later steps first for the output.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from auto_dev.workflows._document import step_kind, walk_steps
from auto_dev.workflows._expr_edits import compiles, lookup
from auto_dev.workflows._ops_base import (
    Candidate,
    Doc,
    FailureEvidence,
    WorkflowMutationContext,
    WorkflowOperator,
    edit_copy,
    step_id_of,
)
from auto_dev.workflows._ops_values import available_paths


def _holds_list(path: str, samples: list[dict[str, Any]]) -> bool:
    return any(ok and isinstance(value, list)
               for ok, value in (lookup(state, path) for state in samples))


class RepointReference(WorkflowOperator):
    """Make a map iterate over another list of the state, or the output read another path."""

    name = "repoint_reference"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        samples = evidence.samples()
        top_ids: list[str] = []
        for loc in walk_steps(doc):
            step_id = step_id_of(loc.step)
            if loc.depth == 0 and step_id is not None:
                top_ids.append(step_id)
            body = loc.step.get("map")
            if step_kind(loc.step) != "map" or not isinstance(body, dict):
                continue
            current = body.get("over")
            for path in available_paths(doc, loc, context, evidence):
                if path == current or not compiles(path):
                    continue

                def repoint(_doc: Doc, step: dict[str, Any], path: str = path) -> None:
                    step["map"]["over"] = path

                yield Candidate(step_id, f"map step {step_id} iterates over {path} instead "
                                f"of {current}", edit_copy(doc, loc.path, repoint),
                                0 if _holds_list(path, samples) else 1)
        yield from self._outputs(doc, context, top_ids)

    def _outputs(self, doc: Doc, context: WorkflowMutationContext, top_ids: list[str]
                 ) -> Iterable[Candidate]:
        current = doc.get("output")
        later_first = [f"steps.{i}" for i in reversed(top_ids)]
        paths = dict.fromkeys([*later_first, *context.state_paths])
        for rank, path in enumerate(paths):
            if path == current or not compiles(path):
                continue

            def build(path: str = path) -> Doc:
                clone = copy.deepcopy(doc)
                clone["output"] = path
                return clone

            # The last step's output is the likeliest result: it goes first.
            yield Candidate(None, f"the workflow outputs {path} instead of {current}", build,
                            0 if rank < len(later_first) else 1)
