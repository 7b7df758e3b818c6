"""The offline AST mutator, the order it tries edits in, and the seam that builds mutators.

:class:`AstMutator` enumerates every single-edit neighbour of a parent (see
:mod:`auto_dev.evolution.ast_ops`) and hands them out in priority order across calls: asking again
for the same parent continues where the last call stopped, so a budget of N evaluations covers the
N most plausible one-edit repairs instead of N random draws with repeats. The order interleaves
the operator families by weight (weighted fair queueing), boosted by what the failing cases say:
the lines named in tracebacks, the exception types (``IndexError`` favours off-by-one edits and
guards, ``ZeroDivisionError`` guards) and the shape of wrong answers (off by one, negated, wrong
order, ``None``). Once a parent's neighbourhood is used up it proposes two-edit compounds, and
with inspirations it proposes crossover children.
"""

from __future__ import annotations

import ast
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from auto_dev.abc import Mutator
from auto_dev.evolution._crossover import crossover
from auto_dev.evolution._layout import preserve_layout
from auto_dev.evolution.ast_ops import Edit, enumerate_edits, render
from auto_dev.evolution.program import CaseFeedback, MutationContext, Program, Proposal

if TYPE_CHECKING:
    import random

    from auto_dev.config import Settings
    from auto_dev.llm.health import LLMHealthReport

log = structlog.get_logger(__name__)

#: Relative share of the proposal stream each family gets (before failure-driven boosts).
FAMILY_WEIGHTS: Mapping[str, float] = {
    "compare_swap": 6.0,
    "off_by_one": 5.0,
    "arith_swap": 5.0,
    "builtin_swap": 5.0,
    "constant": 4.0,
    "bool_swap": 4.0,
    "guard": 3.0,
    "arg_swap": 3.0,
    "return_tweak": 3.0,
    "unary": 3.0,
    "assign_aug": 3.0,
    "stmt_delete": 3.0,
    "operand_swap": 2.0,
    "loop_control": 2.0,
    "name_swap": 1.5,
    "stmt_duplicate": 1.0,
    "guard_try": 0.7,
}
_ERROR_BOOSTS: Mapping[str, Mapping[str, float]] = {
    "IndexError": {"off_by_one": 3.0, "guard": 2.0, "compare_swap": 1.5},
    "ZeroDivisionError": {"guard": 4.0, "guard_try": 3.0, "arith_swap": 1.5},
    "KeyError": {"guard": 2.0, "guard_try": 3.0, "builtin_swap": 1.5},
    "ValueError": {"guard": 2.5, "guard_try": 3.0},
    "TypeError": {"guard": 2.0, "arg_swap": 2.0, "return_tweak": 1.5},
    "AttributeError": {"guard": 2.5, "builtin_swap": 2.0},
    "RecursionError": {"guard": 3.0, "compare_swap": 2.0, "constant": 2.0},
    "UnboundLocalError": {"stmt_delete": 2.0, "guard": 1.5},
    "NameError": {"name_swap": 3.0},
}
_FILE_LINE = re.compile(r'File "([^"]*)", line (\d+)')
_ANY_LINE = re.compile(r"\bline (\d+)\b")
_ERROR_TYPE = re.compile(r"\b([A-Z][A-Za-z]*(?:Error|Exception))\b")


@dataclass(slots=True)
class _ParentState:
    tree: ast.Module
    order: list[Edit]
    cursor: int = 0
    emitted: set[str] = field(default_factory=set)


class AstMutator(Mutator):
    """Offline program repair by single AST edits in priority order, compounds and crossover.

    ``cache_size`` bounds how many parents' enumeration cursors are kept (least recently used
    evicted), which keeps memory flat however long the search runs.
    """

    name = "ast"

    def __init__(
        self,
        *,
        cache_size: int = 16,
        crossover_rate: float = 0.25,
        weights: Mapping[str, float] | None = None,
        systematic: bool = True,
    ) -> None:
        self.cache_size = cache_size
        self.crossover_rate = crossover_rate
        self.weights = dict(FAMILY_WEIGHTS if weights is None else weights)
        self.systematic = systematic
        self._states: OrderedDict[str, _ParentState] = OrderedDict()

    async def mutate(self, parent: Program, context: MutationContext) -> list[Proposal]:
        return self.propose(parent, context)

    def propose(self, parent: Program, context: MutationContext) -> list[Proposal]:
        """The synchronous core of :meth:`mutate` (never raises for a bad parent)."""
        limit = max(0, context.max_proposals)
        if limit == 0:
            return []
        state = self._state(parent, context)
        if state is None:
            return []
        out: list[Proposal] = []
        rng = context.rng
        if context.inspirations and rng.random() < self.crossover_rate:
            out.extend(self._crossover(parent, context, state, limit=max(1, limit // 4)))
        if self.systematic:
            while len(out) < limit and state.cursor < len(state.order):
                edit = state.order[state.cursor]
                state.cursor += 1
                proposal = self._proposal(parent, state, edit, state.tree)
                if proposal is not None:
                    out.append(proposal)
        attempts = 0
        while len(out) < limit and state.order and attempts < limit * 6:
            attempts += 1
            proposal = self._random(parent, state, rng, compound=not self.systematic
                                    or state.cursor >= len(state.order))
            if proposal is not None:
                out.append(proposal)
        return out[:limit]

    def exhausted(self, parent: Program) -> bool:
        """True once every single-edit neighbour of ``parent`` has been proposed."""
        state = self._states.get(parent.code)
        return state is not None and state.cursor >= len(state.order)

    # --- internals -----------------------------------------------------------------------------

    def _state(self, parent: Program, context: MutationContext) -> _ParentState | None:
        state = self._states.get(parent.code)
        if state is not None:
            self._states.move_to_end(parent.code)
            return state
        try:
            tree = ast.parse(parent.code)
        except (SyntaxError, ValueError, RecursionError):
            log.debug("ast_mutator.unparseable_parent", parent=parent.id)
            return None
        edits = enumerate_edits(tree)
        n_lines = len(parent.code.splitlines())
        order = prioritise(edits, context.failing_cases, self.weights, n_lines, tree=tree)
        state = _ParentState(tree=tree, order=order)
        # A compound can undo itself (+ -> - -> +): the parent's own text is never proposed.
        state.emitted.add(ast.unparse(tree) + "\n")
        self._states[parent.code] = state
        while len(self._states) > self.cache_size:
            self._states.popitem(last=False)
        return state

    def _proposal(
        self, parent: Program, state: _ParentState, edit: Edit, tree: ast.Module,
        *, extra: Edit | None = None, code: str | None = None,
    ) -> Proposal | None:
        if code is None:
            code = render(tree, edit)
            if code is not None:  # keep the parent's formatting and comments around the edit
                code = preserve_layout(parent.code, code)
        if code is None or code in state.emitted:
            return None
        state.emitted.add(code)
        operator = f"ast.{edit.op}" if extra is None else f"ast.{edit.op}+{extra.op}"
        description = edit.description if extra is None else (
            f"{edit.description}; {extra.description}"
        )
        return Proposal(
            code=code,
            entrypoint=parent.entrypoint,
            operator=operator,
            parent_ids=(parent.id,) if parent.id else (),
            description=description,
            meta={"line": edit.line, "family": edit.op, "rank": edit.rank,
                  "edits": 1 if extra is None else 2},
        )

    def _random(
        self, parent: Program, state: _ParentState, rng: random.Random, *, compound: bool
    ) -> Proposal | None:
        # Sample from the front half of the priority order: plausible edits stay more likely.
        first = state.order[min(int(rng.random() ** 2 * len(state.order)), len(state.order) - 1)]
        if not compound:
            return self._proposal(parent, state, first, state.tree)
        once = render(state.tree, first)
        if once is None:
            return None
        try:
            child = ast.parse(once)
        except SyntaxError:
            return None
        second_edits = enumerate_edits(child)
        if not second_edits:
            return None
        second = second_edits[rng.randrange(len(second_edits))]
        code = render(child, second)
        if code is None:
            return None
        return self._proposal(parent, state, first, state.tree, extra=second, code=code)

    def _crossover(
        self, parent: Program, context: MutationContext, state: _ParentState, *, limit: int
    ) -> list[Proposal]:
        out: list[Proposal] = []
        for other in context.inspirations:
            if other.code == parent.code or len(out) >= limit:
                continue
            for code, description in crossover(parent.code, other.code, context.rng, limit=limit):
                if code in state.emitted or len(out) >= limit:
                    continue
                state.emitted.add(code)
                parents = tuple(p for p in (parent.id, other.id) if p)
                out.append(Proposal(code=code, entrypoint=parent.entrypoint,
                                    operator="ast.crossover", parent_ids=parents,
                                    description=description, meta={"edits": "crossover"}))
        return out


def suspicious_lines(feedback: Sequence[CaseFeedback], n_lines: int) -> set[int]:
    """Lines of the candidate named in the failing cases' tracebacks."""
    lines: set[int] = set()
    for case in feedback:
        text = case.error or ""
        frames = _FILE_LINE.findall(text)
        if frames:
            for filename, number in frames:
                if _is_candidate_file(filename):
                    lines.add(int(number))
        else:
            lines.update(int(n) for n in _ANY_LINE.findall(text))
    return {n for n in lines if 1 <= n <= n_lines}


def answer_lines(tree: ast.Module, feedback: Sequence[CaseFeedback]) -> set[int]:
    """Lines of the branches that return a wrong case's expected value as a literal.

    When the expected answer is written in the program (``return "Buzz"``) but the case did
    not get it, the likely culprit is the condition guarding that return: its ``if`` line and
    the return itself are suspects.
    """
    wanted = [c.expected for c in feedback if c.status == "wrong_answer"
              and isinstance(c.expected, str | int | float) and not isinstance(c.expected, bool)]
    if not wanted:
        return set()
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        for stmt in node.body:
            value = stmt.value if isinstance(stmt, ast.Return) else None
            if isinstance(value, ast.Constant) and any(
                type(value.value) is type(w) and value.value == w for w in wanted
            ):
                lines.update((node.lineno, stmt.lineno))
    return lines


def _is_candidate_file(filename: str) -> bool:
    lowered = filename.lower()
    if lowered.endswith("_harness.py") or "/lib/python" in lowered:
        return False
    return lowered.startswith("<") or "candidate" in lowered or "solution" in lowered


def failure_boosts(feedback: Sequence[CaseFeedback]) -> dict[str, float]:
    """Multipliers for family weights from exception types and the shape of wrong answers."""
    boosts: dict[str, float] = {}

    def boost(family: str, factor: float) -> None:
        boosts[family] = max(boosts.get(family, 1.0), factor)

    for case in feedback:
        for error_type in set(_ERROR_TYPE.findall(case.error or "")):
            for family, factor in _ERROR_BOOSTS.get(error_type, {}).items():
                boost(family, factor)
        if "NoneType" in (case.error or ""):
            boost("guard", 3.0)
            boost("return_tweak", 2.0)
        if case.status == "timeout":
            for family in ("compare_swap", "arith_swap", "stmt_delete", "off_by_one"):
                boost(family, 2.0)
        if case.status != "wrong_answer":
            continue
        actual, expected = case.actual, case.expected
        if _is_number(actual) and _is_number(expected):
            if abs(actual - expected) == 1:
                for family in ("off_by_one", "constant", "return_tweak"):
                    boost(family, 2.5)
            if actual == -expected and actual != 0:
                boost("operand_swap", 3.0)
                boost("arith_swap", 2.0)
                boost("arg_swap", 2.0)
        elif isinstance(actual, bool) and isinstance(expected, bool):
            for family in ("unary", "bool_swap", "builtin_swap"):
                boost(family, 2.0)
        elif isinstance(actual, list | str) and isinstance(expected, list | str):
            if type(actual) is type(expected) and abs(len(actual) - len(expected)) == 1:
                boost("off_by_one", 3.0)
            if _same_items(actual, expected):
                for family in ("builtin_swap", "compare_swap", "arg_swap"):
                    boost(family, 2.0)
        elif actual is None and expected is not None:
            boost("return_tweak", 2.0)
            boost("stmt_delete", 1.5)
    return boosts


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_items(a: Any, b: Any) -> bool:
    try:
        return a != b and sorted(map(repr, a)) == sorted(map(repr, b))
    except TypeError:
        return False


def prioritise(
    edits: Sequence[Edit],
    feedback: Sequence[CaseFeedback] = (),
    weights: Mapping[str, float] = FAMILY_WEIGHTS,
    n_lines: int = 10_000,
    *,
    tree: ast.Module | None = None,
) -> list[Edit]:
    """Order ``edits`` for trial: weighted fair interleaving of families, suspects first.

    Each family's edits are sorted by (rank, on a suspicious line first, line); the j-th edit of
    a family with weight w gets virtual time (j + 1) / w, halved when it sits on a line a
    traceback named (or that guards a literal return of a wrong case's expected value, when
    ``tree`` is given). The result is sorted by virtual time, so strong families lead without
    starving the weak ones.
    """
    suspects = suspicious_lines(feedback, n_lines)
    if tree is not None:
        suspects |= answer_lines(tree, feedback)
    boosts = failure_boosts(feedback)
    families: dict[str, list[tuple[int, Edit]]] = {}
    for index, edit in enumerate(edits):
        families.setdefault(edit.op, []).append((index, edit))
    keyed: list[tuple[float, int, Edit]] = []
    for family, members in families.items():
        weight = weights.get(family, 1.0) * boosts.get(family, 1.0)
        if weight <= 0:
            continue
        members.sort(key=lambda item: (item[1].rank, item[1].line not in suspects,
                                       item[1].line, item[0]))
        for j, (index, edit) in enumerate(members):
            key = (j + 1) / weight
            if edit.line in suspects:
                key *= 0.5
            keyed.append((key, index, edit))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [edit for _, _, edit in keyed]


@dataclass(frozen=True, slots=True)
class MutatorPlan:
    """The mutators a search uses, their mix weights, and a sentence saying which strategy."""

    mutators: tuple[Mutator, ...]
    weights: tuple[float, ...]
    strategy: str

    def strategy_for(self, llm: LLMHealthReport | None) -> str:
        """The strategy a run actually followed, given its LLM report (``SearchResult.llm``).

        The plan's sentence, unless the run's LLM was unusable (calls made, none answered):
        then the run fell back to the AST repair operators, and this says so and why.
        """
        ast_share = sum(w for m, w in zip(self.mutators, self.weights, strict=True)
                        if m.name == "ast")
        return fallback_strategy(self.strategy, llm, ast_share=ast_share / sum(self.weights))


def fallback_strategy(planned: str, llm: LLMHealthReport | None, *, ast_share: float) -> str:
    """``planned``, or what a run whose LLM was unusable really did with ``ast_share`` of its
    steps given to the AST operators (see :meth:`MutatorPlan.strategy_for`)."""
    if llm is None or llm.usable:
        return planned
    why = llm.cause() or "no call answered"
    if ast_share <= 0:
        return (f"none: the LLM was unusable ({why}) and llm_mutation_fraction = 1 leaves the "
                "AST repair operators no share")
    return f"AST repair operators (fell back: the LLM was unusable: {why})"


def build_mutators(
    settings: Settings | None = None, *, client: Any = None, offline: bool = False
) -> MutatorPlan:
    """The mutators for ``settings``: the LLM mutators when a model is configured, else AST.

    This is the seam for the LLM layer. Unless ``offline``, when ``client`` (an LLM client the
    caller already built, e.g. with its database for the cost ledger) is given or
    ``settings.effective_llm().configured``, it asks ``auto_dev.llm.factory.build_llm_mutators
    (settings, client)`` for the LLM mutators (building the client with ``factory.build_client
    (settings)`` when none was given) and mixes them with the AST mutator by
    ``settings.llm.llm_mutation_fraction``. Without a model (or when that layer is not
    installed) it says so and returns the offline AST mutator alone.
    """
    ast_mutator = AstMutator()
    if offline:
        return MutatorPlan((ast_mutator,), (1.0,), "offline: AST repair operators (--offline)")
    configured = settings is not None and settings.effective_llm().configured
    if client is None and not configured:
        return MutatorPlan((ast_mutator,), (1.0,),
                           "offline: AST repair operators (no LLM model configured)")
    try:
        from auto_dev.llm import factory  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        log.warning("mutators.llm_unavailable", error=str(exc))
        return MutatorPlan((ast_mutator,), (1.0,),
                           f"offline: AST repair operators (LLM layer unavailable: {exc})")
    if settings is None:
        from auto_dev.config import load_settings

        settings = load_settings()
    if client is None:
        client = factory.build_client(settings)
    if client is None:
        return MutatorPlan((ast_mutator,), (1.0,), "offline: AST repair operators")
    llm_mutators = [m for m in factory.build_llm_mutators(settings, client) if m.name != "ast"]
    if not llm_mutators:
        return MutatorPlan((ast_mutator,), (1.0,), "offline: AST repair operators")
    fraction = settings.effective_llm().llm_mutation_fraction
    share = fraction / len(llm_mutators)
    weights = (*([share] * len(llm_mutators)), 1.0 - fraction)
    names = "+".join(m.name for m in llm_mutators)
    return MutatorPlan((*llm_mutators, ast_mutator), weights,
                       f"{names} ({fraction:.0%}) + AST repair operators")
