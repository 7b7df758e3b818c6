"""How the search picks a mutator and a parent (a mixin of :class:`EvolutionSearch`).

Usually an island's tournament winner; sometimes a stepping stone, the seed (for mutators that
enumerate a neighbourhood) or the stone that passes more cases than any feasible program. A
mutator whose neighbourhood of a parent is used up moves on to the next best parent; a model
mutator whose answers about a parent keep being wasted (see :mod:`~auto_dev.evolution.waste`)
moves on to another parent, a neutral child or a stone, or is not called at all.
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING

from auto_dev.abc import Mutator
from auto_dev.evolution.program import CaseFeedback, Program

if TYPE_CHECKING:
    from collections import OrderedDict

    from auto_dev.evolution.compose import Composer
    from auto_dev.evolution.population import Population
    from auto_dev.evolution.search_config import SearchConfig
    from auto_dev.evolution.waste import WasteLedger


class ParentMixin:
    """Mutator and parent selection."""

    if TYPE_CHECKING:
        config: SearchConfig
        mutators: tuple[Mutator, ...]
        weights: tuple[float, ...]
        population: Population
        _rng_select: random.Random
        _seed_program: Program | None
        _focus: deque[Program]
        _composer: Composer | None
        _waste: WasteLedger
        _feedback: OrderedDict[str, list[CaseFeedback]]

    @staticmethod
    def _calls_model(mutator: Mutator) -> bool:
        return bool(getattr(mutator, "calls_model", False))

    def _parent(self, island: int, mutator: Mutator) -> Program | None:
        cfg = self.config
        parent = self.population.sample_parent(island)
        exhausted = getattr(mutator, "exhausted", None)
        draw = self._rng_select.random()
        lead = self._leading_stone()
        steered = True  # towards a stepping stone: composed edits decide, not the ledger
        if self._focus:
            # A stepping stone that passes cases the best does not: explore it now.
            parent = self._focus.popleft()
        elif lead is not None and draw < 0.5:
            # A stone passing more cases than any feasible program is the closest lead.
            parent = lead
        elif self.population.stones and draw < cfg.stone_rate:
            parent = self.population.sample_stone() or parent
        else:
            steered = False
            if (callable(exhausted) and self._seed_program is not None
                    and draw < cfg.stone_rate + cfg.seed_rate
                    and not exhausted(self._seed_program)):
                # Most bugs are one edit away from the seed: keep walking its neighbourhood
                # while partial fixes are explored, rather than only after they are used up.
                parent = self._seed_program
        if callable(exhausted) and exhausted(parent):
            # Its neighbourhood is used up: the next best parent with edits left, if any.
            parent = self.population.fresh_parent(island, lambda p: not exhausted(p)) or parent
        if cfg.waste_control and self._calls_model(mutator):
            name = mutator.name
            if not steered:
                parent = self._most_promising(parent, name)

            def usable(program: Program) -> bool:
                return not self._waste.saturated(name, program.code)

            if not usable(parent):
                # The model keeps answering with programs already seen: ask about another
                # parent, a neutral child of this one (two edits away from it), or a stone.
                return (self.population.fresh_parent(island, usable)
                        or self.population.sample_neutral(parent.code, usable)
                        or next((s for s in self.population.stones if usable(s)), None))
        return parent

    def _most_promising(self, parent: Program, mutator: str) -> Program:
        """Of ``parent``, the seed and the population's members, the one a call of
        ``mutator`` is most likely to get a new, helpful answer about (``parent`` on ties).

        Greedy on pass rate alone, a model is asked about the best partial fix until its
        answers run dry, even when that fix leads nowhere and the seed's neighbourhood, barely
        explored, holds the repair.
        """
        options: dict[str, Program] = {parent.code: parent}
        if self._seed_program is not None:
            options.setdefault(self._seed_program.code, self._seed_program)
        for member in self.population.members():
            options.setdefault(member.code, member)
        return max(options.values(), key=lambda p: self._waste.promise(mutator, p.code))

    def _failing_cases(self, parent: Program, level: int) -> list[CaseFeedback]:
        feedback = self._feedback.get(parent.code, [])
        return list(feedback[: self.config.feedback_cases * (1 + level)])

    def _pick_mutator(self) -> Mutator:
        if len(self.mutators) == 1:
            return self.mutators[0]
        return self._rng_select.choices(self.mutators, weights=self.weights, k=1)[0]

    def _leading_stone(self) -> Program | None:
        if self._composer is None or not self.population.stones:
            return None
        stone = self.population.stones[0]  # the stones are kept most cases first
        best = self.population.best()
        return stone if len(stone.passed_cases) > len(best.passed_cases) else None
