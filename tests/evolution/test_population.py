"""Tests for islands, migration, the MAP-Elites archive and sampling."""

from __future__ import annotations

import random

import pytest

from auto_dev._exceptions import ValidationError
from auto_dev.evolution.population import Population
from auto_dev.evolution.program import Program


def _p(name: str, rate: float, island: int = 0, size: float = 40.0, latency: float = 0.001,
       passed: int = 0) -> Program:
    return Program(code=f"# {name}\ndef f(): pass\n", entrypoint="f", id=name, island=island,
                   scores={"pass_rate": rate, "code_size": size, "latency_s": latency},
                   passed_cases=frozenset(range(passed)))


class TestPopulation:
    """Islands and archive behave and stay bounded."""

    def test_seed_populates_every_island(self) -> None:
        """The seed lands on each island and is the best."""
        pop = Population(random.Random(0), n_islands=3)
        pop.seed(_p("seed", 0.5))
        assert [len(i) for i in pop.islands] == [1, 1, 1]
        assert pop.best().id == "seed"
        assert pop.sample_parent(2).id == "seed"

    def test_capacity_bounds_memory(self) -> None:
        """However many programs are added, each island keeps at most its capacity."""
        pop = Population(random.Random(0), n_islands=2, island_capacity=5)
        for k in range(200):
            pop.add(_p(f"p{k}", (k % 17) / 17, island=k % 2, size=10 + k % 50))
        assert all(len(island) <= 5 for island in pop.islands)
        assert len(pop.archive) <= pop.size_bins * pop.speed_bins
        # The survivors are the best ones.
        assert min(p.scores["pass_rate"] for p in pop.islands[0]) >= 14 / 17

    def test_best_prefers_the_first_of_equals(self) -> None:
        """A later program with the same pass rate does not replace the best."""
        pop = Population(random.Random(0))
        pop.add(_p("a", 0.5))
        pop.add(_p("b", 0.5))
        pop.add(_p("c", 0.75))
        assert pop.best().id == "c"
        pop.add(_p("d", 0.75))
        assert pop.best().id == "c"

    def test_sampling_favours_the_fresh_best(self) -> None:
        """The island's best (newest among equals) is the usual parent."""
        pop = Population(random.Random(1), n_islands=1, archive_rate=0.0)
        pop.seed(_p("seed", 0.25))
        pop.add(_p("better", 0.5))
        picks = [pop.sample_parent(0).id for _ in range(50)]
        assert picks.count("better") == 50

    def test_migration_moves_the_best_around_the_ring(self) -> None:
        """After migration the next island holds a copy of the best, with its island updated."""
        pop = Population(random.Random(0), n_islands=3, migration_interval=10)
        pop.seed(_p("seed", 0.0))
        pop.add(_p("star", 1.0, island=1))
        assert not pop.maybe_migrate(5)
        assert pop.maybe_migrate(10)
        moved = [p for p in pop.islands[2] if p.id == "star"]
        assert moved and moved[0].island == 2

    def test_archive_keeps_one_elite_per_cell(self) -> None:
        """Programs in different behaviour cells coexist; the better one wins a cell."""
        pop = Population(random.Random(0))
        pop.add(_p("small-fast", 0.5, size=40, latency=1e-4))
        pop.add(_p("big-slow", 0.5, size=160, latency=1e-1))
        pop.add(_p("small-fast-better", 0.75, size=40, latency=1e-4))
        ids = {p.id for p in pop.archive.values()}
        assert ids == {"big-slow", "small-fast-better"}

    def test_inspirations_exclude_the_parent(self) -> None:
        """Inspirations are other programs, at most k."""
        pop = Population(random.Random(0), n_islands=2)
        parent = _p("parent", 0.5)
        pop.add(parent)
        for k in range(6):
            pop.add(_p(f"o{k}", 0.1 * k, island=1, size=20 + 30 * k))
        found = pop.inspirations(parent, 3)
        assert len(found) == 3 and all(p.code != parent.code for p in found)

    def test_same_seed_same_draws(self) -> None:
        """Sampling is reproducible with the same rng seed."""

        def draws(seed: int) -> list[str | None]:
            pop = Population(random.Random(seed), n_islands=2)
            for k in range(10):
                pop.add(_p(f"p{k}", 0.1 * (k % 3), island=k % 2, size=20 + 10 * k))
            return [pop.sample_parent(k).id for k in range(20)]

        assert draws(3) == draws(3)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [({"n_islands": 0}, "n_islands"), ({"island_capacity": 0}, "island_capacity"),
         ({"migration_interval": 0}, "migration_interval"), ({"archive_rate": 2}, "archive_rate")],
    )
    def test_bad_settings(self, kwargs: dict[str, float], field: str) -> None:
        """Invalid settings are refused with the field named."""
        with pytest.raises(ValidationError) as info:
            Population(random.Random(0), **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field

    def test_empty_population_has_no_best(self) -> None:
        """best() on an empty population is a clear error."""
        with pytest.raises(ValidationError):
            Population(random.Random(0)).best()


def _full(name: str, rate: float, latency: float, size: float) -> Program:
    scores = {"pass_rate": rate, "latency_s": latency, "peak_memory_kb": 1000.0,
              "code_size": size, "llm_cost_usd": 0.0, "constraint_violation": 0.0}
    return Program(code=f"# {name}\n", entrypoint="f", id=name, scores=scores)


class TestSurvival:
    """A full island evicts by constraint-domination rank and crowding."""

    def test_dominated_member_is_evicted(self) -> None:
        """The member dominated on every objective leaves; the trade-offs stay."""
        pop = Population(random.Random(0), n_islands=1, island_capacity=3)
        pop.add(_full("fast", 0.5, 0.001, 60))
        pop.add(_full("small", 0.5, 0.010, 20))
        pop.add(_full("best", 0.75, 0.005, 40))
        pop.add(_full("dominated", 0.5, 0.020, 80))
        assert {p.id for p in pop.islands[0]} == {"fast", "small", "best"}

    def test_best_by_pass_rate_is_never_evicted(self) -> None:
        """Even when crowding would drop it, the island's best pass rate stays."""
        pop = Population(random.Random(0), n_islands=1, island_capacity=2)
        pop.add(_full("top", 1.0, 0.5, 500))
        for k in range(6):
            pop.add(_full(f"p{k}", 0.25, 0.001 * (k + 1), 10 + k))
        assert "top" in {p.id for p in pop.islands[0]}


class TestNeutralsAndReplace:
    """Neutral children wait as parents to move on to; a re-checked member replaces itself."""

    def test_neutral_children_are_bounded_and_sampled(self) -> None:
        """Per parent at most 8, no repeats; sampling falls back to any parent's children."""
        population = Population(random.Random(0))
        for k in range(12):
            population.add_neutral("parent", _p(f"n{k}", 0.2))
        population.add_neutral("parent", _p("n11", 0.2))
        assert [p.id for p in population.neutrals["parent"]] == [f"n{k}" for k in range(4, 12)]
        assert population.sample_neutral("other", lambda p: p.id == "n7") is not None
        assert population.sample_neutral("parent", lambda p: False) is None

    def test_replace_updates_islands_archive_and_best(self) -> None:
        """The upgraded program stands wherever the old one stood, and may become the best."""
        population = Population(random.Random(0), n_islands=1)
        seed, partial = _p("seed", 0.2), _p("partial", 0.6)
        population.seed(seed)
        population.add(partial)
        full = Program(code=partial.code, entrypoint="f", id="partial", scores={
            **partial.scores, "pass_rate": 1.0})
        population.replace(partial, full)
        assert full in population.islands[0] and partial not in population.islands[0]
        assert population.best() is full
        assert partial not in population.archive.values()
