"""Build the LLM layer from settings. No model configured means offline mode: ``None``, logged.

Nothing here imports litellm; the client imports it at its first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from auto_dev.config import LLMSettings, Settings
from auto_dev.llm.client import LLMClient
from auto_dev.llm.mutator import LLMMutator
from auto_dev.llm.skills import SkillWriter
from auto_dev.llm.types import ChatLLM
from auto_dev.sandbox.base import Limits

if TYPE_CHECKING:
    from auto_dev.abc import Mutator
    from auto_dev.llm.ledger import SessionSource

log = structlog.get_logger(__name__)


def _llm_settings(settings: Settings | LLMSettings) -> LLMSettings:
    return settings.effective_llm() if isinstance(settings, Settings) else settings


def build_client(
    settings: Settings | LLMSettings,
    database: SessionSource | None = None,
    *,
    tenant_id: str | None = None,
    **kwargs: Any,
) -> LLMClient | None:
    """The :class:`LLMClient` for the configured model, or ``None`` in offline mode.

    Pass the application's ``database`` so the ledger lands in it; without one the client
    opens ``settings.database_url`` on its first call (which must then be a file or server
    database, not ``:memory:``). Configuration errors raise
    :class:`~auto_dev.ConfigurationError` naming the setting.
    """
    llm = _llm_settings(settings)
    if not llm.configured:
        log.info(
            "llm.offline_mode",
            reason="no model configured (set AUTO_DEV_LLM_MODEL or [llm] in AUTO_DEV_CONFIG)",
        )
        return None
    database_url = settings.database_url if isinstance(settings, Settings) else None
    if tenant_id is None and isinstance(settings, Settings):
        tenant_id = settings.tenant
    client = LLMClient(
        llm,
        database,
        database_url=None if database is not None else database_url,
        tenant_id=tenant_id or "default",
        **kwargs,
    )
    log.info(
        "llm.configured",
        default_group=client.table.default_group,
        deployments=[d.id for d in client.table.deployments],
    )
    return client


def build_llm_mutators(settings: Settings | LLMSettings, llm: ChatLLM | None) -> list[Mutator]:
    """The LLM mutators (empty in offline mode); the caller mixes them with the AST mutator
    by ``llm.llm_mutation_fraction``."""
    if llm is None:
        log.info("llm.offline_mode", reason="no LLM client: no LLM mutators")
        return []
    llm_settings = _llm_settings(settings)
    if llm_settings.llm_mutation_fraction <= 0:
        return []
    return [LLMMutator(llm)]


def build_skill_writer(
    settings: Settings | LLMSettings, llm: ChatLLM | None
) -> SkillWriter | None:
    """The skill writer for Memento's LLM path, or ``None`` in offline mode."""
    if llm is None:
        log.info("llm.offline_mode", reason="no LLM client: Memento uses templates")
        return None
    limits = (
        Limits(timeout_s=settings.case_timeout_s, memory_mb=settings.case_memory_mb)
        if isinstance(settings, Settings)
        else None
    )
    return SkillWriter(llm, repair_rounds=_llm_settings(settings).repair_rounds, limits=limits)
