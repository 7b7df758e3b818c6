"""An optional on-disk response cache, one JSON file per request.

litellm's own disk cache needs the ``diskcache`` package and is configured through a
process-global (``litellm.cache``), so two clients with different directories would fight over
it; and we need to know a hit happened to write a ``cache_hit`` ledger row. This cache is per
client, dependency-free, and safe across processes (atomic renames).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from auto_dev.llm.types import ChatMessage, LLMResponse

log = structlog.get_logger(__name__)


def cache_key(group: str, messages: Sequence[ChatMessage], **params: Any) -> str:
    """A digest of everything that determines the answer."""
    payload = json.dumps(
        {"group": group, "messages": list(messages), "params": params},
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class DiskCache:
    """Key -> JSON object, sharded into 256 directories."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # A corrupt entry is a miss, never an error: the call simply goes to the model.
            log.warning("llm.cache_unreadable", path=str(path), error=str(exc))
            return None
        return data if isinstance(data, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(value, handle, ensure_ascii=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, TypeError, ValueError) as exc:
            log.warning("llm.cache_write_failed", path=str(path), error=str(exc))


def cache_entry(response: LLMResponse) -> dict[str, Any]:
    """What is stored for an answer."""
    return {
        "text": response.text,
        "model": response.model,
        "deployment": response.deployment,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
    }
