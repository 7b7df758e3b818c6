"""Structured logging for auto-dev: ``configure_logging()`` sets up structlog once.

Libraries auto-dev uses (APScheduler, alembic, litellm, docker) log through the standard
:mod:`logging` module; their records are rendered by the same structlog renderer, so every line
on stderr has one format (console or JSON).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}

#: Standard-library loggers whose INFO lines are routine chatter, shown from WARNING up whatever
#: the configured level: APScheduler ("Added job", "Running job ..."), alembic (two lines per
#: command that opens the database), httpx and LiteLLM (a line per model call).
_CHATTY = ("apscheduler", "alembic", "httpx", "LiteLLM")


class _StderrLoggerFactory:
    """Loggers writing to ``sys.stderr`` as it is when they are created, not when configured.

    Binding the stream at configure time breaks whenever ``sys.stderr`` is replaced later (test
    runners' capture, daemonisation): every later log call would write to a closed file.
    """

    def __call__(self, *args: object) -> structlog.PrintLogger:
        return structlog.PrintLogger(file=sys.stderr)


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to the ``sys.stderr`` of the moment (see above)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass  # always the current sys.stderr


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
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
