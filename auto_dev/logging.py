"""Structured logging for auto-dev: ``configure_logging()`` sets up structlog once."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class _StderrLoggerFactory:
    """Loggers writing to ``sys.stderr`` as it is when they are created, not when configured.

    Binding the stream at configure time breaks whenever ``sys.stderr`` is replaced later (test
    runners' capture, daemonisation): every later log call would write to a closed file.
    """

    def __call__(self, *args: object) -> structlog.PrintLogger:
        return structlog.PrintLogger(file=sys.stderr)


def configure_logging(
    level: Literal["debug", "info", "warning", "error"] = "warning",
    fmt: Literal["console", "json"] = "console",
) -> None:
    """Route structlog (and stdlib logging) to stderr as console lines or JSON objects.

    Logs go to stderr so that command output on stdout (tables, ``--json``) stays machine-readable.
    """
    numeric = _LEVELS[level]
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
