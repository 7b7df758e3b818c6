"""The workflow language: JSON documents that chain tools and model calls, interpreted as data.

Nothing in a workflow is ever executed as code by auto-dev: steps are data, expressions are JMESPath
and only the tools a step names run, in the sandbox.

* :func:`validate_workflow` checks a document against :data:`WORKFLOW_SCHEMA` and the rules a
  schema cannot say (unique ids, expressions, known tools and kinds, nesting);
* :class:`WorkflowInterpreter` runs one, bounded by :class:`RunLimits`, calling tools through a
  :class:`~auto_dev.ToolInvoker` (:class:`SandboxToolInvoker`) and returning a
  :class:`WorkflowRun` with a :class:`StepTrace` per step.
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
from auto_dev.workflows._trace import StepTrace, WorkflowRun
from auto_dev.workflows.diff import WorkflowDiff, structural_diff
from auto_dev.workflows.interpreter import (
    RunLimits,
    StepContext,
    StepKinds,
    WorkflowHooks,
    WorkflowInterpreter,
    check_input,
    derive_seed,
)
from auto_dev.workflows.operators import (
    OFFLINE_OPERATORS,
    LLMWorkflowEdit,
    ReflectivePromptRewrite,
    WorkflowModelOperator,
    WorkflowMutationContext,
    WorkflowOperator,
    WorkflowProposal,
    propose_offline,
)
from auto_dev.workflows.schema import WORKFLOW_SCHEMA, validate_workflow
from auto_dev.workflows.search import (
    WorkflowSearchResult,
    WorkflowTask,
    evolve_workflow,
    load_tasks_file,
)
from auto_dev.workflows.tools import SandboxToolInvoker, load_tools_file

__all__ = [
    "BUILTIN_STEP_KINDS",
    "OFFLINE_OPERATORS",
    "WORKFLOW_SCHEMA",
    "LLMWorkflowEdit",
    "ReflectivePromptRewrite",
    "RunLimits",
    "SandboxToolInvoker",
    "StepContext",
    "StepKinds",
    "StepLocation",
    "StepTrace",
    "WorkflowDiff",
    "WorkflowHooks",
    "WorkflowInterpreter",
    "WorkflowModelOperator",
    "WorkflowMutationContext",
    "WorkflowOperator",
    "WorkflowProposal",
    "WorkflowRun",
    "WorkflowSearchResult",
    "WorkflowTask",
    "canonical_json",
    "check_input",
    "derive_seed",
    "evolve_workflow",
    "find_step",
    "format_path",
    "load_tasks_file",
    "load_tools_file",
    "propose_offline",
    "step_kind",
    "structural_diff",
    "validate_workflow",
    "walk_steps",
    "workflow_hash",
]
