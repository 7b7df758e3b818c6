"""Evolution: programs, offline repair operators, populations and the search loop.

* :mod:`~auto_dev.evolution.program`: the value types (Program, Proposal, MutationContext).
* :mod:`~auto_dev.evolution.ast_ops`: single-edit AST repair operators and crossover.
* :mod:`~auto_dev.evolution.mutators`: :class:`AstMutator` and :func:`build_mutators` (the seam
  where the LLM mutators join).
* :mod:`~auto_dev.evolution.dedup`: syntax check and normalised-AST hashing.
* :mod:`~auto_dev.evolution.diff`: SEARCH/REPLACE blocks, unified diffs, code extraction.
* :mod:`~auto_dev.evolution.population`: islands, migration, the MAP-Elites archive.
* :mod:`~auto_dev.evolution.cascade`: quick-then-full evaluation of one candidate.
* :mod:`~auto_dev.evolution.search`: :class:`EvolutionSearch`, the loop itself (its knobs in
  :mod:`~auto_dev.evolution.search_config`); :mod:`~auto_dev.evolution.records` holds what it
  reports.
* :mod:`~auto_dev.evolution.deadlines`: adaptive per-case deadlines and the re-check queue.
* :mod:`~auto_dev.evolution.compose`: merges of partial fixes (composed edits).
* :mod:`~auto_dev.evolution.waste`: model-call waste per parent.

Submodules are imported explicitly (``from auto_dev.evolution.search import EvolutionSearch``) so
that importing the package stays cheap.
"""
