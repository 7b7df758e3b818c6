"""A population per target: islands with periodic migration and a MAP-Elites archive.

Islands evolve apart so that one early partial fix does not take over every lineage; every
``migration_interval`` steps each island sends its best members to the next one (a ring). A full
island evicts by NSGA-II survival (constraint-domination rank, then crowding distance over the
objectives) so that a diverse front survives; parents are chosen greedily on pass rate, which is
what a repair needs. The
archive keeps the best program per cell of a behaviour grid (code size relative to the first
program x latency decade), which is where diverse inspirations come from.

Memory stays flat: islands and archive are bounded, sampling draws indices with the seeded rng,
and nothing copies the population per step.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator

from auto_dev._exceptions import ValidationError
from auto_dev.evolution.program import Program
from auto_dev.fitness.objectives import DEFAULT_OBJECTIVES, VIOLATION
from auto_dev.fitness.pareto import select, to_minimisation

Cell = tuple[int, int]


def fitness_key(program: Program) -> tuple[float, float, float, float]:
    """Sort key, larger is better: pass rate, then fewer violations, faster, smaller."""
    s = program.scores
    return (
        float(s.get("pass_rate", 0.0)),
        -float(s.get(VIOLATION, 0.0)),
        -float(s.get("latency_s", 0.0)),
        -float(s.get("code_size", 0.0)),
    )


def _rate_key(program: Program) -> tuple[float, float]:
    # Selection looks at pass rate and feasibility only: latency noise must not steer repair.
    return float(program.scores.get("pass_rate", 0.0)), -float(program.scores.get(VIOLATION, 0.0))


class Population:
    """Islands plus an archive for one target. ``rng`` makes every draw reproducible."""

    def __init__(
        self,
        rng: random.Random,
        *,
        n_islands: int = 4,
        island_capacity: int = 24,
        migration_interval: int = 25,
        migration_size: int = 1,
        size_bins: int = 8,
        speed_bins: int = 8,
        archive_rate: float = 0.15,
        tournament: int = 3,
    ) -> None:
        if n_islands < 1:
            raise ValidationError("n_islands", "must be at least 1")
        if island_capacity < 1:
            raise ValidationError("island_capacity", "must be at least 1")
        if migration_interval < 1:
            raise ValidationError("migration_interval", "must be at least 1")
        if not 0 <= archive_rate <= 1:
            raise ValidationError("archive_rate", "must be between 0 and 1")
        self.rng = rng
        self.n_islands = n_islands
        self.island_capacity = island_capacity
        self.migration_interval = migration_interval
        self.migration_size = migration_size
        self.size_bins = size_bins
        self.speed_bins = speed_bins
        self.archive_rate = archive_rate
        self.tournament = max(1, tournament)
        self.islands: list[list[Program]] = [[] for _ in range(n_islands)]
        #: Infeasible programs worth exploring from: they break a case their parent passed but
        #: pass more cases overall. Never the best; sampled now and then as a parent, which is
        #: how two-edit repairs whose first edit alone regresses are found.
        self.stones: list[Program] = []
        self.stone_capacity = 8
        #: Children that passed the same cases as their parent (no gain, nothing broken), per
        #: parent code: where a search moves on to when a parent's neighbourhood is used up, as
        #: their neighbourhoods hold the two-edit programs around the parent.
        self.neutrals: OrderedDict[str, deque[Program]] = OrderedDict()
        self.neutral_parents = 64
        self.archive: dict[Cell, Program] = {}
        self._reference_size: float | None = None
        self._best: Program | None = None
        self.migrations = 0

    # --- content -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(island) for island in self.islands)

    def members(self) -> Iterator[Program]:
        for island in self.islands:
            yield from island

    def best(self) -> Program:
        """The best program seen (pass rate first; the earliest wins ties)."""
        if self._best is None:
            raise ValidationError("population", "is empty")
        return self._best

    def set_best(self, program: Program) -> None:
        """Declare ``program`` the best (used when secondary objectives decide among equals)."""
        self._best = program

    def seed(self, program: Program) -> None:
        """Put ``program`` on every island (the start of a run)."""
        for island in range(self.n_islands):
            self.add(dataclasses.replace(program, island=island))

    def add(self, program: Program) -> bool:
        """Insert ``program`` into its island and the archive; False when it was rejected."""
        if not 0 <= program.island < self.n_islands:
            raise ValidationError("program.island", f"must be in [0, {self.n_islands})")
        if self._reference_size is None:
            self._reference_size = max(1.0, float(program.scores.get("code_size", 1.0)))
        if self._best is None or _rate_key(program) > _rate_key(self._best):
            self._best = program
        island = self.islands[program.island]
        if any(member.code == program.code for member in island):
            return False
        island.append(program)
        admitted = True
        if len(island) > self.island_capacity:
            evicted = island.pop(self._worst(island))
            admitted = evicted is not program
        cell = self.cell(program)
        incumbent = self.archive.get(cell)
        if incumbent is None or fitness_key(program) > fitness_key(incumbent):
            self.archive[cell] = program
        return admitted

    def add_stone(self, program: Program) -> bool:
        """Keep ``program`` as a stepping stone (bounded; the most cases passed are kept)."""
        if any(stone.code == program.code for stone in self.stones):
            return False
        self.stones.append(program)
        self.stones.sort(key=lambda p: -len(p.passed_cases))
        del self.stones[self.stone_capacity :]
        return program in self.stones

    def add_neutral(self, parent_code: str, program: Program) -> None:
        """Keep ``program``, a neutral child of the parent with ``parent_code`` (bounded)."""
        children = self.neutrals.get(parent_code)
        if children is None:
            children = self.neutrals[parent_code] = deque(maxlen=8)
            while len(self.neutrals) > self.neutral_parents:
                self.neutrals.popitem(last=False)
        if all(child.code != program.code for child in children):
            children.append(program)

    def sample_neutral(
        self, parent_code: str, usable: Callable[[Program], bool]
    ) -> Program | None:
        """A usable neutral child of that parent (or of any parent), or None."""
        for code in (parent_code, *reversed(self.neutrals)):
            options = [p for p in self.neutrals.get(code, ()) if usable(p)]
            if options:
                return options[self.rng.randrange(len(options))]
        return None

    def replace(self, old: Program, new: Program) -> None:
        """Put ``new`` wherever ``old`` is (islands, archive, best): a re-check found it passes
        more cases than first measured."""
        for island in self.islands:
            for index, member in enumerate(island):
                if member is old:
                    island[index] = new
        for cell, member in list(self.archive.items()):
            if member is old:
                self.archive[cell] = new
        if self._best is old or self._best is None or _rate_key(new) > _rate_key(self._best):
            self._best = new

    def sample_stone(self) -> Program | None:
        """A stepping stone, favouring those that pass the most cases (None when there are none)."""
        if not self.stones:
            return None
        index = min(int(self.rng.random() ** 2 * len(self.stones)), len(self.stones) - 1)
        return self.stones[index]

    def _worst(self, island: list[Program]) -> int:
        """Index of the member to evict: the last by constraint-domination rank and crowding
        over the objectives (NSGA-II survival), or by pass rate when scores are incomplete.
        The island's best by pass rate is never evicted."""
        names = [o.name for o in DEFAULT_OBJECTIVES]
        keep_top = max(range(len(island)), key=lambda i: (_rate_key(island[i]), -i))
        if all(all(n in p.scores for n in names) for p in island):
            F, v = to_minimisation([p.scores for p in island], DEFAULT_OBJECTIVES)
            order = [int(i) for i in select(F, v, len(island)) if int(i) != keep_top]
            return order[-1]
        rest = [i for i in range(len(island)) if i != keep_top]
        return min(rest, key=lambda i: (_rate_key(island[i]), -i))

    def cell(self, program: Program) -> Cell:
        """MAP-Elites descriptor: (code size relative to the first program, latency decade)."""
        size = float(program.scores.get("code_size", 0.0))
        ratio = size / (self._reference_size or 1.0)
        # Ratios 0.25..4 spread over the size bins on a log scale.
        size_bin = int((math.log2(max(ratio, 1e-9)) + 2) / 4 * self.size_bins)
        latency = float(program.scores.get("latency_s", 0.0))
        speed_bin = int(math.log10(max(latency, 1e-7)) + 7)  # 100 ns decade = bin 0
        return (
            min(max(size_bin, 0), self.size_bins - 1),
            min(max(speed_bin, 0), self.speed_bins - 1),
        )

    # --- sampling -------------------------------------------------------------------------------

    def sample_parent(self, island: int) -> Program:
        """A parent for ``island``: usually a tournament winner there, sometimes an archive elite.

        Ties on pass rate go to the most recently added member, so a fresh improvement is
        explored before older equals.
        """
        members = self.islands[island % self.n_islands]
        if not members:
            return self.best()
        if self.archive and self.rng.random() < self.archive_rate:
            cells = sorted(self.archive)
            elite = self.archive[cells[self.rng.randrange(len(cells))]]
            if _rate_key(elite) >= _rate_key(self.best()):
                return elite
        picks = [self.rng.randrange(len(members)) for _ in range(min(self.tournament,
                                                                    len(members)))]
        # Always include the island's best in the tournament: repair is a greedy climb.
        top = max(range(len(members)), key=lambda i: (_rate_key(members[i]), i))
        picks.append(top)
        winner = max(picks, key=lambda i: (_rate_key(members[i]), i))
        return members[winner]

    def fresh_parent(self, island: int, usable: Callable[[Program], bool]) -> Program | None:
        """The best member of ``island`` (then of any island) that ``usable`` accepts.

        The search uses it to move on from a parent whose neighbourhood a mutator has used up
        to the next best one, instead of circling a local optimum.
        """
        order = list(range(self.n_islands))
        order.remove(island % self.n_islands)
        for index in (island % self.n_islands, *order):
            members = self.islands[index]
            ranked = sorted(range(len(members)), key=lambda i: (_rate_key(members[i]), i),
                            reverse=True)
            for i in ranked:
                if usable(members[i]):
                    return members[i]
        return None

    def inspirations(self, parent: Program, k: int) -> list[Program]:
        """Up to ``k`` good programs other than ``parent``: archive elites and other islands'."""
        if k <= 0:
            return []
        pool: dict[str, Program] = {}
        for program in self.archive.values():
            pool.setdefault(program.code, program)
        for index, island in enumerate(self.islands):
            if index != parent.island and island:
                top = max(island, key=_rate_key)
                pool.setdefault(top.code, top)
        pool.pop(parent.code, None)
        ranked = sorted(pool.values(), key=fitness_key, reverse=True)
        head = ranked[: max(k * 2, k)]
        self.rng.shuffle(head)
        return head[:k]

    def maybe_migrate(self, step: int) -> bool:
        """Migrate when ``step`` is a multiple of the interval; True when it did."""
        if self.n_islands < 2 or step == 0 or step % self.migration_interval:
            return False
        self.migrate()
        return True

    def migrate(self) -> None:
        """Ring migration: each island sends copies of its best members to the next island."""
        movers: list[Program] = []
        for index, island in enumerate(self.islands):
            best = sorted(island, key=_rate_key, reverse=True)[: self.migration_size]
            target = (index + 1) % self.n_islands
            movers.extend(dataclasses.replace(p, island=target) for p in best)
        for program in movers:
            self.add(program)
        self.migrations += 1
