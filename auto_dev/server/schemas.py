"""The request bodies of the API: what they hold, checked and documented in the OpenAPI schema.

The ingest bodies mirror the keyword arguments of :meth:`AutoDev.record_episode` and
:meth:`AutoDev.record_skill_execution` (a test keeps them equal). These models check shape and
types, strictly (``"true"`` is not a boolean), and the facade then checks meaning (a malformed
``inputs``, an unknown tool); both kinds of failure are 422 naming the field.

Ingest routes read their body themselves (size, depth and batch limits come first), so their
schemas reach the OpenAPI document through :func:`json_body`, which also registers every model
they use as a component.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_STRICT = ConfigDict(extra="forbid", strict=True)

#: Components added to the OpenAPI document (see ``server.app``).
COMPONENTS: dict[str, Any] = {}


class SegmentIn(BaseModel):
    """One step of an episode: a tool call with its inputs and output, or its error."""

    model_config = _STRICT

    kind: str = Field("tool_call", min_length=1, max_length=32)
    tool_name: str | None = Field(None, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: str | None = None
    duration_s: float | None = Field(None, ge=0)


class EpisodeIn(BaseModel):
    """One task an agent ran. ``inputs`` is ``{"args": [...], "kwargs": {...}}`` of the tool
    call; with ``expected`` (any JSON, ``null`` included) the episode also becomes a regression
    test of the tool. With ``workflow`` (a registered workflow's name) it is a run of that
    workflow: ``inputs`` is the workflow's input and ``expected`` makes it a task of it."""

    model_config = _STRICT

    agent: str = Field(min_length=1, max_length=200)
    task: str
    success: bool
    tool_name: str | None = Field(None, max_length=200)
    inputs: dict[str, Any] | None = None
    expected: Any = None
    output: Any = None
    error_trace: str | None = None
    segments: list[SegmentIn] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    workflow: str | None = Field(None, min_length=1, max_length=200)

    def facade_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``record_episode``: only what was sent (an absent
        ``expected`` is not ``expected=None``)."""
        return self.model_dump(include=self.model_fields_set)


class SkillExecutionIn(BaseModel):
    """One execution of a skill (tool) by an agent; watched versions use these to detect
    regressions."""

    model_config = _STRICT

    agent: str = Field(min_length=1, max_length=200)
    skill_name: str = Field(min_length=1, max_length=200)
    success: bool
    execution_seconds: float = Field(ge=0)
    metadata: dict[str, Any] | None = None

    @field_validator("execution_seconds")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    def facade_kwargs(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class DecisionIn(BaseModel):
    """A reviewer's decision: why (recorded with the token's name as the actor)."""

    model_config = _STRICT

    reason: str = Field("", max_length=10_000)


class RollbackIn(BaseModel):
    """Roll a tool back: why, and optionally to which version (default: the previous good
    one)."""

    model_config = _STRICT

    reason: str = Field(min_length=1, max_length=10_000)
    to_version: int | None = Field(None, ge=1)


class WorkflowRollbackIn(BaseModel):
    """Roll a workflow back: why, and optionally to which version (default: the newest older
    one not itself rolled back)."""

    model_config = _STRICT

    reason: str = Field(min_length=1, max_length=10_000)
    version: int | None = Field(None, ge=1)


class SignalIn(BaseModel):
    """A signal about the active version (or ``version``) of a tool or a workflow: its
    business value, a user's feedback, or a kind of your own (any name). Name exactly one of
    ``tool`` and ``workflow`` (the facade checks that). Mirrors the keyword arguments of
    ``AutoDev.record_signal``."""

    model_config = _STRICT

    kind: str = Field(min_length=1, max_length=200)
    value: float
    tool: str | None = Field(None, min_length=1, max_length=200)
    workflow: str | None = Field(None, min_length=1, max_length=200)
    version: int | None = Field(None, ge=1)
    agent: str | None = Field(None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def target_field(self) -> str:
        return "tool" if self.tool is not None else "workflow"

    def facade_kwargs(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class MaturityIn(BaseModel):
    """Set an agent's maturity for a capability (an admin's decision, audited)."""

    model_config = _STRICT

    capability: str = Field(min_length=1, max_length=200)
    maturity: str = Field(min_length=1, max_length=20)
    reason: str = Field(min_length=1, max_length=10_000)


class TokenIn(BaseModel):
    """A new token of the caller's tenant."""

    model_config = _STRICT

    role: str
    name: str | None = Field(None, min_length=1, max_length=200)


def json_body(model: type[BaseModel], *, batch: bool) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body of ``model`` (or, with ``batch``, a list of
    them), for routes that read their body themselves."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        COMPONENTS[name] = definition
    COMPONENTS[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    body = {"oneOf": [ref, {"type": "array", "items": ref, "minItems": 1}]} if batch else ref
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": body}}}}
