"""Helpers for the tests that kill a sandbox's owner: polling with a deadline, finding processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

#: How long leftovers may outlive their owner (generous: the machine may be loaded).
GRACE_S = 10.0

#: A case that renames its process to ``tag`` (so the host can see it running) and never returns.
ENDLESS = (
    "import ctypes, time\n"
    "def f(tag, i=0):\n"
    "    ctypes.CDLL(None).prctl(15, tag.encode(), 0, 0, 0)  # PR_SET_NAME\n"
    "    while True:\n"
    "        time.sleep(0.05)\n"
)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; past the deadline, fail naming
    ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def processes_named(tag: str) -> list[int]:
    """Live processes whose name (``/proc/<pid>/comm``) is ``tag``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm", "rb") as fh:
                    if fh.read().strip() == tag.encode():
                        found.append(int(name))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
