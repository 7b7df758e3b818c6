"""Validating workflow documents: the shipped JSON Schema, then the rules a schema cannot say.

:func:`validate_workflow` checks, in order:

1. the document is JSON (no NaN, no objects that are not JSON, not nested without end);
2. :data:`WORKFLOW_SCHEMA` (``schema.json``, JSON Schema draft 2020-12): fields, types, ranges,
   exactly one kind per step;
3. step ids are unique in the whole document;
4. every JMESPath expression compiles, and every ``${...}`` in a value is well formed;
5. a switch has at most one ``otherwise`` branch, and it comes last; a map's ``as`` does not
   hide ``input``, ``steps`` or ``vars``;
6. the tools and custom kinds named exist, when the caller says which do;
7. steps are not nested deeper than the limit.

Every problem raises :class:`~auto_dev.ValidationError` whose ``field`` is the place in the
document, e.g. ``workflow.steps[2].retry.max_attempts``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as InvalidSchema
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match

from auto_dev._exceptions import ValidationError
from auto_dev.workflows._document import format_path, step_kind, walk_steps
from auto_dev.workflows._expressions import (
    ExpressionError,
    compile_expression,
    parse_template,
    strings_in,
)

#: The workflow document's JSON Schema (draft 2020-12), as shipped in ``schema.json``.
WORKFLOW_SCHEMA: dict[str, Any] = json.loads(
    resources.files("auto_dev.workflows").joinpath("schema.json").read_text(encoding="utf-8"))

#: How deep steps may nest (switch branches, map bodies, catch blocks) unless told otherwise.
DEFAULT_MAX_DEPTH = 8

#: Names the run state already uses, so a map's ``as`` may not take them.
RESERVED_STATE_NAMES = frozenset({"input", "steps", "vars", "item", "error"})

Draft202012Validator.check_schema(WORKFLOW_SCHEMA)
_VALIDATOR = Draft202012Validator(WORKFLOW_SCHEMA)
_KIND_CHOICE = WORKFLOW_SCHEMA["$defs"]["step"]["oneOf"]
_TAKES_ARGS = WORKFLOW_SCHEMA["$defs"]["takes_args"]["anyOf"]
_IDENTIFIER = WORKFLOW_SCHEMA["$defs"]["identifier"]["pattern"]
_KIND_KEYS = ("tool", "llm", "switch", "map", "set", "fail", "custom")

Path = tuple[str | int, ...]


def validate_workflow(doc: Any, *, tools: Collection[str] | None = None,
                      kinds: Collection[str] | None = None,
                      max_depth: int | None = None) -> dict[str, Any]:
    """A deep copy of ``doc`` once it is a valid workflow; else :class:`ValidationError`.

    ``tools`` and ``kinds``, when given, are the tools and custom step kinds that exist: a
    document naming any other is refused. ``max_depth`` bounds nesting (default: the
    document's ``limits.max_depth``, else :data:`DEFAULT_MAX_DEPTH`; the lower of the two when
    both are set).
    """
    copy = _json_copy(doc)
    _check_schema(copy)
    _check_ids(copy)
    _check_expressions(copy)
    _check_blocks(copy)
    _check_names(copy, tools, kinds)
    own = copy.get("limits", {}).get("max_depth", DEFAULT_MAX_DEPTH)
    check_depth(copy, own if max_depth is None else min(own, max_depth))
    return copy


def check_depth(doc: dict[str, Any], max_depth: int) -> None:
    """Refuse a document with a step nested more than ``max_depth`` blocks deep."""
    for location in walk_steps(doc):
        if location.depth > max_depth:
            raise ValidationError(
                format_path(location.path),
                f"is nested {location.depth} blocks deep; the limit max_depth is {max_depth}")


def _json_copy(doc: Any) -> dict[str, Any]:
    try:
        text = json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("workflow", f"is not a JSON document: {exc}") from None
    except RecursionError:
        raise ValidationError("workflow", "is nested too deeply to be a workflow") from None
    try:
        copy = json.loads(text)
    except RecursionError:
        raise ValidationError("workflow", "is nested too deeply to be a workflow") from None
    if not isinstance(copy, dict):
        raise ValidationError("workflow", f"must be a JSON object, got {type(doc).__name__}")
    return copy


# -- 2. the JSON Schema ---------------------------------------------------------------------------


def _check_schema(doc: dict[str, Any]) -> None:
    try:
        errors = list(_VALIDATOR.iter_errors(doc))
    except RecursionError:
        raise ValidationError("workflow", "is nested too deeply to be a workflow") from None
    error = best_match(errors)
    if error is not None:
        # A step without a kind also fails "only tool and custom steps take args"; the missing
        # kind is the problem to name.
        kindless = [e for e in errors if e.validator == "oneOf" and e.validator_value is
                    _KIND_CHOICE and e.absolute_path == error.absolute_path]
        if kindless and any(n.validator_value is _TAKES_ARGS for n in _lineage(error)):
            error = kindless[0]
        field, problem = _describe(error)
        raise ValidationError(field, problem)


def _describe(error: SchemaError) -> tuple[str, str]:
    """The field and problem of a schema error, in the words of this language."""
    for node in _lineage(error):
        path = tuple(node.absolute_path)
        if node.validator == "oneOf" and node.validator_value is _KIND_CHOICE:
            instance = node.instance if isinstance(node.instance, dict) else {}
            found = [k for k in _KIND_KEYS if k in instance]
            kinds = ", ".join(_KIND_KEYS)
            if found:
                return format_path(path), (f"has {len(found)} step kinds ({', '.join(found)}); "
                                           f"a step has exactly one of: {kinds}")
            return format_path(path), f"has no step kind; a step has exactly one of: {kinds}"
        if node.validator == "anyOf" and node.validator_value is _TAKES_ARGS:
            return format_path((*path, "args")), "is only taken by tool and custom steps"
    path = tuple(error.absolute_path)
    if error.validator == "required":
        missing = _quoted_name(error.message)
        return format_path((*path, missing)), "is required"
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        known = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        name = extra[0] if extra else "?"
        return format_path((*path, name)), (f"is not a known field (known here: "
                                            f"{', '.join(known)})")
    if error.validator == "pattern" and error.validator_value == _IDENTIFIER:
        if "propertyNames" in error.absolute_schema_path:  # the instance is a key of the object
            path = (*path, str(error.instance))
        return format_path(path), (f"{error.instance!r} is not an identifier (letters, digits "
                                   "and _, not starting with a digit)")
    if error.validator == "propertyNames" and isinstance(error.instance, dict):
        bad = [k for k in error.instance if not re.fullmatch(_IDENTIFIER, k)] or ["?"]
        return format_path((*path, bad[0])), ("is not an identifier (letters, digits and _, "
                                             "not starting with a digit)")
    return format_path(path), error.message


def _lineage(error: SchemaError) -> list[SchemaError]:
    chain: list[SchemaError] = []
    node: SchemaError | None = error
    while node is not None:
        chain.append(node)
        node = node.parent
    return chain


def _quoted_name(message: str) -> str:
    # jsonschema says "'name' is a required property"
    if message.startswith("'") and "'" in message[1:]:
        return message[1:message.index("'", 1)]
    return message.split(" ", 1)[0]


# -- 3. ids ---------------------------------------------------------------------------------------


def _check_ids(doc: dict[str, Any]) -> None:
    first_seen: dict[str, Path] = {}
    for location in walk_steps(doc):
        step_id = location.step["id"]
        if step_id in first_seen:
            raise ValidationError(
                format_path((*location.path, "id")),
                f"duplicate step id {step_id!r} (also at {format_path(first_seen[step_id])}); "
                "step ids are unique in the whole workflow")
        first_seen[step_id] = location.path


# -- 4. expressions and templates -----------------------------------------------------------------


def _check_expressions(doc: dict[str, Any]) -> None:
    if "output" in doc:
        _expression(doc["output"], ("output",))
    for location in walk_steps(doc):
        step, path = location.step, location.path
        if "when" in step:
            _expression(step["when"], (*path, "when"))
        for index, branch in enumerate(step.get("switch", ())):
            if "when" in branch:
                _expression(branch["when"], (*path, "switch", index, "when"))
        if "map" in step:
            _expression(step["map"]["over"], (*path, "map", "over"))
        for key in ("args", "set"):
            if key in step:
                _templates(step[key], (*path, key))
        if "llm" in step:
            for key in ("system", "prompt"):
                if key in step["llm"]:
                    _templates(step["llm"][key], (*path, "llm", key))
        if "fail" in step:
            _templates(step["fail"], (*path, "fail"))


def _expression(text: str, path: Path) -> None:
    try:
        compile_expression(text)
    except ExpressionError as exc:
        raise ValidationError(format_path(path), str(exc)) from None


def _templates(value: Any, path: Path) -> None:
    for where, text in strings_in(value, path):
        try:
            parse_template(text)
        except ExpressionError as exc:
            raise ValidationError(format_path(where), f"{exc} in {_preview(text)}") from None
        except RecursionError:
            raise ValidationError(format_path(where), "has an expression nested too deeply"
                                  ) from None


def _preview(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# -- 5. blocks ------------------------------------------------------------------------------------


def _check_blocks(doc: dict[str, Any]) -> None:
    for name, schema in doc.get("input", {}).get("properties", {}).items():
        try:
            Draft202012Validator.check_schema(schema)
        except InvalidSchema as exc:
            raise ValidationError(format_path(("input", "properties", name)),
                                  f"is not a JSON Schema: {exc.message}") from None
    for location in walk_steps(doc):
        step, path = location.step, location.path
        branches = step.get("switch", ())
        for index, branch in enumerate(branches):
            if "otherwise" in branch and index != len(branches) - 1:
                raise ValidationError(
                    format_path((*path, "switch", index)),
                    "an otherwise branch must be the last branch of a switch (only one allowed)")
        if "map" in step:
            name = step["map"].get("as", "item")
            if name in RESERVED_STATE_NAMES - {"item"}:
                raise ValidationError(format_path((*path, "map", "as")),
                                      f"{name!r} would hide the run state's {name}; pick "
                                      "another name")


# -- 6. tools and kinds ---------------------------------------------------------------------------


def _check_names(doc: dict[str, Any], tools: Collection[str] | None,
                 kinds: Collection[str] | None) -> None:
    for location in walk_steps(doc):
        step, path = location.step, location.path
        if "tool" in step and tools is not None and step["tool"] not in tools:
            raise ValidationError(format_path((*path, "tool")),
                                  f"unknown tool {step['tool']!r} (known: {_names(tools)})")
        if "custom" in step and kinds is not None and step_kind(step) not in kinds:
            raise ValidationError(
                format_path((*path, "custom")),
                f"unknown step kind {step['custom']!r} (registered: {_names(kinds)})")


def _names(names: Collection[str]) -> str:
    ordered = sorted(names)
    if not ordered:
        return "none"
    text = ", ".join(ordered[:20])
    return text + (f" and {len(ordered) - 20} more" if len(ordered) > 20 else "")
