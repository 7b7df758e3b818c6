"""Fitness: objectives, Pareto selection (numpy) and the scoring service.

* :mod:`~auto_dev.fitness.objectives`: the default objectives and the evaluation record.
* :mod:`~auto_dev.fitness.pareto`: constraint-domination, non-dominated sorting, crowding,
  selection and :func:`~auto_dev.fitness.pareto.is_promotable`.
* :mod:`~auto_dev.fitness.service`: :class:`~auto_dev.fitness.service.FitnessService`.
"""
