"""The LLM layer: every model call auto-dev makes, through litellm.

* :mod:`~auto_dev.llm.client` -- ``LLMClient``: fallbacks, retries, timeouts, circuit breakers,
  optional disk cache, budget and ledger; :mod:`~auto_dev.llm._litellm` is the only importer of
  litellm (lazily, at the first call) and maps its exceptions into auto-dev's error tree.
* :mod:`~auto_dev.llm.budget` / :mod:`~auto_dev.llm.ledger` -- prices, reserve-then-settle
  daily budgets, the ``LLMCall`` cost ledger and its queries.
* :mod:`~auto_dev.llm.mutator` -- ``LLMMutator`` for AlphaEvolver; :mod:`~auto_dev.llm.skills`
  -- ``SkillWriter`` for Memento; :mod:`~auto_dev.llm.prompts` -- their prompts.
* :mod:`~auto_dev.llm.health` -- calls answered and failed, failures by kind (authentication,
  unknown model, unreachable...), kept by the client and the mutator so runs report them.
* :mod:`~auto_dev.llm.factory` -- build all of it from settings (``None``: offline mode).

Importing this package (or any module above) does not import litellm.
"""
