"""The workflow language: JSON documents that chain tools and model calls, interpreted as data.

Nothing in a workflow is ever executed as code by auto-dev: steps are data, expressions are JMESPath
and only the tools a step names run, in the sandbox.
"""

from auto_dev.workflows._document import (
    BUILTIN_STEP_KINDS,
    StepLocation,
    canonical_json,
    find_step,
    format_path,
    step_kind,
    walk_steps,
    workflow_hash,
)

__all__ = [
    "BUILTIN_STEP_KINDS",
    "StepLocation",
    "canonical_json",
    "find_step",
    "format_path",
    "step_kind",
    "walk_steps",
    "workflow_hash",
]
