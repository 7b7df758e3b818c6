"""SIGTERM handled like Ctrl-C by the CLI's long-running commands (``evolve``, ``scheduler run``).

Inside :func:`sigterm_like_ctrl_c`, SIGTERM does what Ctrl-C does: under ``asyncio.run`` the
main task is cancelled, so every ``finally`` and ``async with`` on the way out runs and the
sandbox is closed (no harness process or container outlives the command); outside an event loop
``KeyboardInterrupt`` is raised. Either way the block ends with :class:`CommandInterrupted`,
whose exit code is 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports
a process stopped by that signal. A second signal while cleaning up stops at once, as a second
Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


class CommandInterrupted(Exception):
    """A command was stopped by Ctrl-C (SIGINT) or SIGTERM after cleaning up."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def sigterm_like_ctrl_c() -> Iterator[None]:
    """Within the block SIGTERM acts as Ctrl-C; an interruption comes out as
    :class:`CommandInterrupted`. The previous SIGTERM handler is restored afterwards.

    Signal handlers can only be set from the main thread: elsewhere (a command run inside a
    worker thread) SIGTERM keeps its previous handling.
    """
    received: list[int] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        # asyncio.run installs its own SIGINT handler (cancel the main task, then raise
        # KeyboardInterrupt once it has wound down); delegate to whatever handles Ctrl-C now.
        ctrl_c = signal.getsignal(signal.SIGINT)
        if callable(ctrl_c):
            ctrl_c(signal.SIGINT, frame)
        else:  # Ctrl-C is ignored (a background job): SIGTERM must still stop us
            raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    try:
        yield
    except KeyboardInterrupt:
        raise CommandInterrupted(received[0] if received else signal.SIGINT) from None
    finally:
        if in_main_thread:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    if received:  # the main task swallowed its cancellation: it was still stopped by a signal
        raise CommandInterrupted(received[0])


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` that SIGTERM stops as Ctrl-C does (raises
    :class:`CommandInterrupted` once ``main`` has wound down)."""
    with sigterm_like_ctrl_c():
        return asyncio.run(main)


__all__ = ["CommandInterrupted", "run_stoppable", "sigterm_like_ctrl_c"]
