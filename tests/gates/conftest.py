"""The gates tests share their fixtures with the candidates tests."""

from tests._gate_fixtures import *  # noqa: F403
