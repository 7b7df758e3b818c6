"""The candidates tests share their fixtures with the gates tests."""

from tests._gate_fixtures import *  # noqa: F403
