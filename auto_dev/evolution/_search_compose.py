"""The search's composed edits and neutral parents (a mixin of :class:`EvolutionSearch`).

Partial fixes (improvements and stepping stones) go to the
:class:`~auto_dev.evolution.compose.Composer`, whose merges wait in a queue that the loop drains
before its next mutator call. Children that fixed nothing but changed how the failing cases fail
are kept as *neutral* parents: where a model mutator moves on to when its answers about a parent
keep being wasted.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import TYPE_CHECKING

from auto_dev.evolution._search_candidate import COMPOSER, SearchCandidate
from auto_dev.evolution.compose import Composer, Composition, PartialFix
from auto_dev.evolution.program import CaseFeedback, Program, Proposal
from auto_dev.evolution.records import CandidateRecord, SearchStatus
from auto_dev.sandbox.base import SandboxResult

if TYPE_CHECKING:
    from collections import OrderedDict

    from auto_dev.evolution.population import Population
    from auto_dev.evolution.search_config import SearchConfig


class ComposeMixin:
    """Merging partial fixes, leading stones and neutral parents."""

    if TYPE_CHECKING:
        config: SearchConfig
        seed: Program
        population: Population
        _composer: Composer | None
        _composed: deque[tuple[Proposal, Program, tuple[PartialFix, ...]]]
        _composed_count: int
        _feedback: OrderedDict[str, list[CaseFeedback]]
        _parents: dict[str, str]

        async def _filter(
            self, proposal: Proposal, parent: Program, mutator: str, island: int
        ) -> SearchCandidate | None: ...
        def _remember_feedback(self, program: Program, result: SandboxResult) -> None: ...

    async def _composed_batch(self, room: int, island: int) -> list[SearchCandidate]:
        """Merges of partial fixes waiting to be evaluated (no mutator call)."""
        batch: list[SearchCandidate] = []
        while self._composed and len(batch) < room:
            proposal, parent, fixes = self._composed.popleft()
            candidate = await self._filter(proposal, parent, COMPOSER, island)
            if candidate is not None:
                candidate.parents = fixes
                batch.append(candidate)
        self._composed_count += len(batch)
        return batch

    def _neutral(
        self, candidate: SearchCandidate, record: CandidateRecord, program: Program
    ) -> None:
        """A child that broke nothing and fixed nothing but changed how the failing cases fail:
        a parent to move on to, and a partner for its siblings' fixes."""
        parent = candidate.parent
        changed = self._changed_failures(parent, record.result)
        if record.status is not SearchStatus.NO_GAIN or not changed:
            return  # a neutral edit beside the point of the failing cases
        neutral = dataclasses.replace(program, passed_cases=parent.passed_cases)
        self._parents.setdefault(record.id, parent.id or "")
        if self._composer is not None and program.id:
            fix = PartialFix(neutral, parent.id or "", frozenset(), feasible=True,
                             changed=changed)
            for composition in self._composer.add(fix):
                self._composed.append(self._merge_proposal(composition))
        if not self.config.waste_control:
            return
        self.population.add_neutral(parent.code, neutral)
        if record.result is not None and neutral.code not in self._feedback:
            self._remember_feedback(neutral, record.result)

    def _changed_failures(
        self, parent: Program, result: SandboxResult | None
    ) -> frozenset[int]:
        """The failing cases of ``parent`` that ``result`` fails differently."""
        before = {f.index: (f.status, repr(f.actual)) for f in self._feedback.get(parent.code, ())}
        if result is None:
            return frozenset()
        return frozenset(c.index for c in result.cases if c.index in before
                         and before[c.index] != (c.status.value, repr(c.output)))

    def _compose(
        self, candidate: SearchCandidate, record: CandidateRecord, program: Program
    ) -> None:
        """Remember a partial fix and queue its merges with earlier fixes of other cases."""
        if self._composer is None or record.status.filtered or not program.id:
            return
        parent = candidate.parent
        gained = record.passed_cases - parent.passed_cases
        promising = record.status is SearchStatus.IMPROVED or record.stepping_stone
        if not gained or not promising:
            # A fix that breaks as much as it mends rarely merges into a better program.
            self._composer.remember(program, parent.id)
            return
        fix = PartialFix(program, parent.id or "", gained, record.status.accepted)
        for composition in self._composer.add(fix):
            self._composed.append(self._merge_proposal(composition))

    def _merge_proposal(
        self, composition: Composition
    ) -> tuple[Proposal, Program, tuple[PartialFix, ...]]:
        first, second = composition.first, composition.second
        # Judged against the better feasible partner (it must keep that one's cases), else
        # against the common ancestor.
        feasible = [f.program for f in (first, second) if f.feasible]
        parent = max(feasible, key=lambda p: len(p.passed_cases)) if feasible else (
            composition.base)
        ids = tuple(p.program.id for p in (first, second) if p.program.id)
        proposal = Proposal(code=composition.code, entrypoint=self.seed.entrypoint,
                            operator="compose.merge", parent_ids=ids,
                            description=composition.description,
                            meta={"edits": "merge", "base": composition.base.id})
        return proposal, parent, (first, second)

