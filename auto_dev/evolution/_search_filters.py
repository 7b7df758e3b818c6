"""The search's cheap filters before any sandbox run (a mixin of :class:`EvolutionSearch`).

A proposal that does not parse, is empty or comment-only, lacks the entrypoint, equals its parent
or repeats a program already seen (normalised AST hash) is recorded with its status and never
costs an evaluation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from auto_dev.evolution._search_candidate import SearchCandidate
from auto_dev.evolution.dedup import (
    Deduplicator,
    SyntaxProblem,
    defines,
    hash_tree,
    is_trivial,
    node_count,
    normalized_hash,
    parse,
)
from auto_dev.evolution.records import CandidateRecord, OperatorStats, SearchHooks, SearchStatus

if TYPE_CHECKING:
    from auto_dev.evolution.program import Program, Proposal


class FilterMixin:
    """Turning a proposal into a candidate, or recording why it need not run."""

    if TYPE_CHECKING:
        seed: Program
        hooks: SearchHooks
        _proposals: int
        _prefix: str
        _operator_stats: dict[str, OperatorStats]
        _dedup: Deduplicator
        _digests: OrderedDict[str, bytes]

        def _record(self, candidate: SearchCandidate, status: SearchStatus, stage: str,
                    reason: str) -> CandidateRecord: ...
        def _count(self, record: CandidateRecord) -> None: ...

    async def _filter(
        self, proposal: Proposal, parent: Program, mutator: str, island: int
    ) -> SearchCandidate | None:
        self._proposals += 1
        cid = f"{self._prefix}c{self._proposals}"
        candidate = SearchCandidate(proposal, parent, mutator, cid, island)
        stats = self._operator_stats.setdefault(proposal.operator, OperatorStats())
        stats.proposed += 1
        status, reason, candidate.size = self._cheap_checks(proposal, parent)
        if status is None:
            return candidate
        record = self._record(candidate, status, "filter", reason)
        self._count(record)
        if self.hooks.on_filtered is not None:
            await self.hooks.on_filtered(record)
        return None

    def _cheap_checks(
        self, proposal: Proposal, parent: Program
    ) -> tuple[SearchStatus | None, str, int | None]:
        """(status or None when it may run, reason, code size measured on the way)."""
        tree = parse(proposal.code)
        if isinstance(tree, SyntaxProblem):
            return SearchStatus.SYNTAX_ERROR, f"does not parse: {tree}", None
        if is_trivial(tree):
            return SearchStatus.TRIVIAL, "empty or comment-only program", None
        if proposal.entrypoint != self.seed.entrypoint or not defines(tree, self.seed.entrypoint):
            return (SearchStatus.NO_ENTRYPOINT, f"does not define {self.seed.entrypoint!r}",
                    None)
        digest = hash_tree(tree, in_place=True)  # strips docstrings: the tree is ours
        if digest == self._digest(parent.code):
            return SearchStatus.UNCHANGED, "same program as its parent (normalised)", None
        if not self._dedup.add(digest):
            return SearchStatus.DUPLICATE, "already seen (normalised AST hash)", None
        return None, "", node_count(tree)

    def _digest(self, code: str) -> bytes | None:
        digest = self._digests.get(code)
        if digest is None:
            digest = normalized_hash(code) or b""
            self._digests[code] = digest
            if len(self._digests) > 256:
                self._digests.popitem(last=False)
        return digest
