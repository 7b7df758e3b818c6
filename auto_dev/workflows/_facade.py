"""The facade's workflow methods (``AutoDev`` inherits them; ``autodev.workflows`` is the
:class:`~auto_dev.workflows.registry.WorkflowRegistry` they delegate to)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auto_dev.candidates.workflow_versions import WorkflowRollbackResult
    from auto_dev.queries.workflows import SignalSummary, WorkflowVersionInfo
    from auto_dev.workflows.registry import WorkflowRegistry


class WorkflowMethods:
    """``register_workflow``, ``workflow_definition``, ``workflow_versions``,
    ``rollback_workflow``, ``add_workflow_task``, ``record_signal``, ``signal_summary``."""

    workflows: WorkflowRegistry

    def register_workflow(self, doc: dict[str, Any], *, actor: str,
                          tenant_id: str | None = None) -> int:
        """Register a workflow document; return its active version number (see
        :meth:`WorkflowRegistry.register`)."""
        return self.workflows.register(doc, actor=actor, tenant_id=tenant_id)

    def workflow_definition(self, name: str, *, version: int | None = None,
                            tenant_id: str | None = None) -> dict[str, Any]:
        """The definition of the active version of workflow ``name`` (or of ``version``)."""
        return self.workflows.definition(name, version=version, tenant_id=tenant_id)

    def workflow_versions(self, name: str, *,
                          tenant_id: str | None = None) -> list[WorkflowVersionInfo]:
        """Every version of workflow ``name``, oldest first."""
        return self.workflows.versions(name, tenant_id=tenant_id)

    def rollback_workflow(self, name: str, version: int | None, *, actor: str, reason: str,
                          tenant_id: str | None = None) -> WorkflowRollbackResult:
        """Re-activate ``version`` of workflow ``name`` (audited with ``actor`` and ``reason``)."""
        return self.workflows.rollback(name, version, actor=actor, reason=reason,
                                       tenant_id=tenant_id)

    def add_workflow_task(self, name: str, input: dict[str, Any], expected: Any = ..., *,
                          tenant_id: str | None = None) -> str:
        """Store a task (input and expected output) of workflow ``name``; return its id."""
        return self.workflows.add_task(name, input, expected, tenant_id=tenant_id)

    async def record_signal(self, *, kind: str, value: float, tool: str | None = None,
                            workflow: str | None = None, version: int | None = None,
                            agent: str | None = None, metadata: dict[str, Any] | None = None,
                            tenant_id: str | None = None) -> str:
        """Record a business-value, feedback or own signal against the active version (or
        ``version``) of ``tool`` or ``workflow``; the promotion watch judges freshly promoted
        versions on them. Returns the signal's id."""
        return self.workflows.record_signal(kind=kind, value=value, tool=tool,
                                            workflow=workflow, version=version, agent=agent,
                                            metadata=metadata, tenant_id=tenant_id)

    def signal_summary(self, *, tool: str | None = None, workflow: str | None = None,
                       version: int | None = None, tenant_id: str | None = None
                       ) -> SignalSummary:
        """Count, mean, min, max per kind of signal of a tool or workflow version."""
        return self.workflows.signal_summary(tool=tool, workflow=workflow, version=version,
                                             tenant_id=tenant_id)
