"""Operators that change what a workflow reads and decides: tools, argument paths, comparisons
and constants."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from auto_dev.workflows._document import StepLocation, find_step, step_kind, walk_steps
from auto_dev.workflows._expr_edits import (
    FLIPPED,
    ExprToken,
    compiles,
    expression_tokens,
    is_identifier,
    json_literal,
    literal_value,
    lookup,
    raw_literal,
    raw_value,
    replace_token,
    sibling_fields,
    state_paths_in,
)
from auto_dev.workflows._ops_base import (
    Candidate,
    Doc,
    FailureEvidence,
    Path,
    WorkflowMutationContext,
    WorkflowOperator,
    ancestor_ids,
    edit_copy,
    step_id_of,
)

#: How many alternative values one constant may take in one proposal round.
_MAX_ALTERNATIVES = 4

KeyPath = tuple[str | int, ...]


def _get_in(node: Any, keys: KeyPath) -> Any:
    for key in keys:
        node = node[key]
    return node


def _set_in(node: Any, keys: KeyPath, value: Any) -> None:
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


def _setter(doc: Doc, path: Path, keys: KeyPath, value: Any, *,
            expression: bool = False) -> Callable[[], Doc | None]:
    def edit(_doc: Doc, step: dict[str, Any]) -> bool:
        if expression and not compiles(value):
            return False
        _set_in(step, keys, value)
        return True

    return edit_copy(doc, path, edit)


def _condition_sites(step: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """The step's conditions: its ``when`` and its switch branches' ``when``."""
    if isinstance(step.get("when"), str):
        yield ("when",), step["when"]
    branches = step.get("switch")
    if isinstance(branches, list):
        for i, branch in enumerate(branches):
            if isinstance(branch, dict) and isinstance(branch.get("when"), str):
                yield ("switch", i, "when"), branch["when"]


def _value_leaves(value: Any, keys: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _value_leaves(item, (*keys, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _value_leaves(item, (*keys, i))
    else:
        yield keys, value


def _argument_leaves(step: dict[str, Any]) -> Iterator[tuple[KeyPath, Any]]:
    """The values a step passes on: ``args`` of a tool or custom step, a ``set`` step's values."""
    for key in ("args", "set"):
        if isinstance(step.get(key), dict):
            yield from _value_leaves(step[key], (key,))


def _whole_reference(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("${") and value.endswith("}") \
            and value.count("${") == 1:
        return value[2:-1].strip()
    return None


class SwitchTool(WorkflowOperator):
    """Call another registered tool in a tool step (similar names first)."""

    name = "switch_tool"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            current = loc.step.get("tool")
            if step_kind(loc.step) != "tool" or not isinstance(current, str):
                continue
            for other in dict.fromkeys(context.tools):
                if other == current:
                    continue
                close = difflib.SequenceMatcher(None, current, other).ratio() >= 0.5
                yield Candidate(step_id_of(loc.step),
                                f"step {loc.step.get('id')} calls {other} instead of {current}",
                                _setter(doc, loc.path, ("tool",), other), 0 if close else 1)


def available_paths(doc: Doc, target: StepLocation, context: WorkflowMutationContext,
                    evidence: FailureEvidence) -> list[str]:
    """State paths a value of the step at ``target`` can read: the declared input fields, the
    outputs of steps that ran before it (and their fields seen in traces), ``vars`` written
    before it, the item of each map holding it (and its fields seen in traces), and the paths
    seen in traces."""
    paths: dict[str, None] = {}
    spec = doc.get("input")
    if isinstance(spec, dict):
        for name in [*(spec.get("required") or []), *(spec.get("properties") or {})]:
            if isinstance(name, str) and is_identifier(name):
                paths[f"input.{name}"] = None
    for sample in evidence.inputs:
        if isinstance(sample, dict):
            paths.update((f"input.{k}", None) for k in sample if is_identifier(str(k)))
    for loc in _ran_before(doc, target):
        step_id = step_id_of(loc.step)
        if step_id is None or not is_identifier(step_id):
            continue
        paths[f"steps.{step_id}"] = None
        for output in evidence.outputs.get(step_id, ()):
            if isinstance(output, dict):
                paths.update((f"steps.{step_id}.{k}", None) for k in output
                             if is_identifier(str(k)))
        if step_kind(loc.step) == "set" and isinstance(loc.step.get("set"), dict):
            paths.update((f"vars.{k}", None) for k in loc.step["set"] if is_identifier(str(k)))
    for map_id in ancestor_ids(doc).get(step_id_of(target.step) or "", ()):
        found = find_step(doc, map_id)
        body = found.step.get("map") if found is not None else None
        if not isinstance(body, dict):
            continue
        name = body.get("as", "item")
        paths[name] = None
        for item in evidence.items.get(map_id, ()):
            if isinstance(item, dict):
                paths.update((f"{name}.{k}", None) for k in item if is_identifier(str(k)))
    paths.update((p, None) for p in context.state_paths if compiles(p))
    return list(paths)


def _ran_before(doc: Doc, target: StepLocation) -> Iterator[StepLocation]:
    """Steps whose output the step at ``target`` can see: the steps before it in its block and
    in the blocks holding it, and the steps nested in those (not in a map body: per-item
    scope)."""
    visible: list[Path] = []
    for loc in walk_steps(doc):
        if loc.path == target.path:
            return
        cut = len(loc.list_path)
        position = target.path[cut] if len(target.path) > cut else None
        if (target.path[:cut] == loc.list_path and isinstance(position, int)
                and loc.index < position):
            visible.append(loc.path)
            yield loc
            continue
        holder = next((p for p in visible if loc.list_path[:len(p)] == p), None)
        if holder is not None and "map" not in loc.list_path[len(holder):]:
            yield loc


class RepointArgument(WorkflowOperator):
    """Make an argument (a ``${path}`` value) read another path of the state."""

    name = "repoint_argument"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            leaves = [(keys, ref) for keys, value in _argument_leaves(loc.step)
                      if (ref := _whole_reference(value)) is not None]
            if not leaves:
                continue
            choices = available_paths(doc, loc, context, evidence)
            for keys, ref in leaves:
                last = ref.split(".")[-1]
                for path in choices:
                    if path == ref:
                        continue
                    related = (path.split(".")[-1] == last or path.startswith(ref + ".")
                               or ref.startswith(path + "."))
                    field = ".".join(str(k) for k in keys)
                    yield Candidate(step_id_of(loc.step),
                                    f"step {loc.step.get('id')} passes {field} from {path} "
                                    f"instead of {ref}",
                                    _setter(doc, loc.path, keys, "${" + path + "}"),
                                    0 if related else 1)


class FlipComparison(WorkflowOperator):
    """Negate a condition: flip one comparator (``==`` to ``!=``, ``<`` to ``>=``) or the whole."""

    name = "flip_comparison"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        for loc in walk_steps(doc):
            step_id = step_id_of(loc.step)
            for keys, expr in _condition_sites(loc.step):
                tokens = expression_tokens(expr)
                for i, token in enumerate(tokens):
                    if token.kind == "cmp":
                        new = replace_token(tokens, i, FLIPPED[token.text])
                        yield Candidate(step_id, f"step {step_id}: {_key(keys)} {expr!r} -> "
                                        f"{new!r}", _setter(doc, loc.path, keys, new,
                                                            expression=True))
                stripped = expr.strip()
                inner = stripped[2:-1] if stripped.startswith("!(") and stripped.endswith(")") \
                    else None
                new = inner if inner is not None and compiles(inner) else f"!({stripped})"
                yield Candidate(step_id, f"step {step_id}: {_key(keys)} {expr!r} -> {new!r}",
                                _setter(doc, loc.path, keys, new, expression=True), 1)


def _key(keys: KeyPath) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


class RewriteComparisonField(WorkflowOperator):
    """Make a condition test a sibling field (``steps.order.status`` -> ``steps.order.state``)
    seen in traces or known paths."""

    name = "rewrite_comparison_field"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        samples = evidence.samples()
        known = list(context.state_paths)
        spec = doc.get("input")
        if isinstance(spec, dict):
            known += [f"input.{n}" for n in spec.get("required") or [] if isinstance(n, str)]
        for loc in walk_steps(doc):
            step_id = step_id_of(loc.step)
            for keys, expr in _condition_sites(loc.step):
                tokens = expression_tokens(expr)
                literals = _literals(tokens)
                for i, token in enumerate(tokens):
                    parts = token.text.split(".")
                    if token.kind != "path" or len(parts) < 2:
                        continue
                    parent = ".".join(parts[:-1])
                    for sibling in sibling_fields(parent, samples, known):
                        if sibling == parts[-1]:
                            continue
                        new = replace_token(tokens, i, f"{parent}.{sibling}")
                        # A sibling that held a value the condition compares with is the
                        # likeliest field meant (status vs state == 'shipped').
                        held = [lookup(state, f"{parent}.{sibling}") for state in samples]
                        rank = 0 if any(ok and value in literals for ok, value in held) else 1
                        yield Candidate(step_id, f"step {step_id}: {_key(keys)} tests "
                                        f"{parent}.{sibling} instead of {token.text}",
                                        _setter(doc, loc.path, keys, new, expression=True), rank)


def _literals(tokens: Sequence[ExprToken]) -> list[Any]:
    """The constant values an expression compares with."""
    out: list[Any] = []
    for token in tokens:
        if token.kind == "raw":
            out.append(raw_value(token))
        elif token.kind == "lit":
            out.append(literal_value(token))
    return out


class ChangeConstant(WorkflowOperator):
    """Change one constant: a literal in a condition, a number, flag or string in the
    arguments, or a step's ``timeout_s``."""

    name = "change_constant"

    def candidates(self, doc: Doc, context: WorkflowMutationContext,
                   evidence: FailureEvidence) -> Iterable[Candidate]:
        samples = evidence.samples()
        strings = _document_strings(doc)
        for loc in walk_steps(doc):
            step_id = step_id_of(loc.step)
            for keys, expr in _condition_sites(loc.step):
                seen = _observed_strings(expr, samples)
                tokens = expression_tokens(expr)
                for i, token in enumerate(tokens):
                    for text, rank in _literal_alternatives(token, seen, strings):
                        new = replace_token(tokens, i, text)
                        yield Candidate(step_id, f"step {step_id}: {_key(keys)} compares with "
                                        f"{text} instead of {token.text}",
                                        _setter(doc, loc.path, keys, new, expression=True),
                                        rank)
            for keys, value in _argument_leaves(loc.step):
                for alt in _value_alternatives(value, strings):
                    yield Candidate(step_id, f"step {step_id}: {_key(keys)} = {alt!r} instead "
                                    f"of {value!r}", _setter(doc, loc.path, keys, alt), 1)
            timeout = loc.step.get("timeout_s")
            if isinstance(timeout, int | float) and not isinstance(timeout, bool) \
                    and timeout > 0:
                for alt in (timeout * 2, timeout / 2):
                    yield Candidate(step_id, f"step {step_id}: timeout_s {alt:g} instead of "
                                    f"{timeout:g}", _setter(doc, loc.path, ("timeout_s",), alt),
                                    0 if step_id in evidence.errors else 1)


def _document_strings(doc: Doc) -> list[str]:
    """String constants of the document: raw literals in conditions, plain argument strings."""
    found: dict[str, None] = {}
    for loc in walk_steps(doc):
        for _, expr in _condition_sites(loc.step):
            found.update((raw_value(t), None) for t in expression_tokens(expr) if t.kind == "raw")
        for _, value in _argument_leaves(loc.step):
            if isinstance(value, str) and "${" not in value and len(value) <= 40:
                found[value] = None
    return list(found)


def _observed_strings(expr: str, samples: list[dict[str, Any]]) -> list[str]:
    """String values the fields an expression reads held in the traces."""
    found: dict[str, None] = {}
    for path in state_paths_in(expr):
        for state in samples:
            ok, value = lookup(state, path)
            if ok and isinstance(value, str) and len(value) <= 40:
                found[value] = None
    return list(found)


def _literal_alternatives(token: Any, seen: list[str], strings: list[str]
                          ) -> list[tuple[str, int]]:
    """Other literals for ``token``: values its fields held in traces first (rank 0), then
    the document's other strings (rank 1); numbers and flags nudged (rank 0)."""
    if token.kind not in ("raw", "lit"):
        return []
    value = raw_value(token) if token.kind == "raw" else literal_value(token)
    if token.kind == "lit" and not isinstance(value, str):
        return [(json_literal(v), 0) for v in _value_alternatives(value, [])]
    out: dict[str, int] = {}
    for rank, pool in ((0, seen), (1, strings)):
        for text in pool:
            literal = raw_literal(text) if token.kind == "raw" else json_literal(text)
            if text != value and literal and literal not in out:
                out[literal] = rank
    return list(out.items())[:_MAX_ALTERNATIVES * 2]


def _value_alternatives(value: Any, strings: list[str]) -> list[Any]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [v for v in dict.fromkeys((value + 1, value - 1, value * 2, 0)) if v != value]
    if isinstance(value, float):
        return [v for v in dict.fromkeys((value * 2, value / 2, round(value))) if v != value]
    if isinstance(value, str) and "${" not in value:
        return [s for s in strings if s != value][:_MAX_ALTERNATIVES]
    return []
