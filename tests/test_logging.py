"""configure_logging: one format on stderr for structlog and standard-library records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from auto_dev.logging import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("apscheduler", "alembic")}
    yield
    structlog.configure(**saved)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestConfigureLogging:
    """Library records share structlog's format; routine library chatter stays quiet."""

    def test_stdlib_warning_is_rendered_like_ours(self, capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
        """An APScheduler warning comes out as the same JSON object as a structlog line."""
        configure_logging("warning", "json")
        logging.getLogger("apscheduler.executors.default").warning(
            "Run time of job %r was missed by %s", "nightly", "0:00:05")
        structlog.get_logger("auto_dev.test").warning("ours", n=1)
        theirs, ours = _json_lines(capsys.readouterr().err)
        assert theirs["event"] == "Run time of job 'nightly' was missed by 0:00:05"
        assert theirs["level"] == "warning" and theirs["logger"] == "apscheduler.executors.default"
        assert set(ours) - {"n"} <= set(theirs)  # same keys: level, timestamp, event
        assert "timestamp" in theirs

    def test_chatter_is_quiet_at_info(self, capsys: pytest.CaptureFixture[str]) -> None:
        """At info, APScheduler's and alembic's INFO lines are dropped, other INFO records and
        APScheduler's warnings are not."""
        configure_logging("info", "json")
        logging.getLogger("apscheduler.scheduler").info("Added job %r", "nightly")
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logging.getLogger("apscheduler.scheduler").warning("job missed")
        logging.getLogger("somelib").info("useful")
        events = [line["event"] for line in _json_lines(capsys.readouterr().err)]
        assert events == ["job missed", "useful"]

    def test_console_format_for_stdlib_records(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The console renderer formats library records too (level in brackets, no
        'WARNING:root:' prefix of logging's default format)."""
        configure_logging("warning", "console")
        logging.getLogger("apscheduler.scheduler").warning("job missed")
        err = capsys.readouterr().err
        assert "[warning  ] job missed" in err and "WARNING:" not in err
