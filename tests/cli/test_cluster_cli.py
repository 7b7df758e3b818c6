"""``auto-dev cluster check``: the Ray cluster as a table (or JSON), and its failures."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from auto_dev.cli import app


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("AUTO_DEV_CONFIG", "AUTO_DEV_RAY_ADDRESS", "AUTO_DEV_RAY_ACTORS",
                 "AUTO_DEV_RAY_NODE_SANDBOX", "AUTO_DEV_SANDBOX_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    return {"COLUMNS": "200"}


@pytest.mark.ray
class TestClusterCheck:
    """The check starts actors on the cluster, runs a smoke job through each, and reports."""

    def test_table_shows_nodes_actors_slots_and_backend(self, ray_session: Any,
                                                        env: dict[str, str]) -> None:
        """Two one-slot process actors on the local node: one row, 2 actors, 2 slots, each
        actor's smoke job passed, exit 0."""
        result = CliRunner().invoke(app, ["cluster", "check", "--actors", "2", "--slots", "1",
                                          "--node-sandbox", "process"], env=env)
        assert result.exit_code == 0, result.output
        assert "process" in result.output and "actor 0: ok" in result.output
        assert "actor 1: ok" in result.output
        assert "1 alive node(s), 2 actor(s), 2 sandbox slot(s): usable" in result.output

    def test_json_matches_the_cluster(self, ray_session: Any, env: dict[str, str]) -> None:
        """--json lists every node Ray knows, with the actors placed on it (settings are the
        defaults: one actor per node with a slot per CPU)."""
        env = {**env, "AUTO_DEV_RAY_NODE_SANDBOX": "process"}
        result = CliRunner().invoke(app, ["cluster", "check", "--json"], env=env)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        nodes = {n["NodeID"]: n for n in ray_session.nodes()}
        assert {n["node_id"] for n in report["nodes"]} == set(nodes)
        [node] = report["nodes"]
        assert node["cpus"] == 2 and node["slots"] == 2 and node["backends"] == ["process"]
        [actor] = node["actors"]
        assert actor["slots"] == 2 and actor["error"] is None and actor["smoke_s"] > 0
        assert report["usable"] is True and report["slots"] == 2


class TestClusterCheckFailures:
    """Bad settings and a missing Ray are one-line errors with the right exit code."""

    def test_bad_address_exits_2_naming_it(self, env: dict[str, str]) -> None:
        """A malformed --address is refused before anything connects."""
        result = CliRunner().invoke(app, ["cluster", "check", "--address", "http://head"],
                                    env=env)
        assert result.exit_code == 2 and "ray.address" in result.output

    def test_unreachable_head_exits_1(self, env: dict[str, str]) -> None:
        """Nothing listening at the address is reported at once, not after Ray's retries."""
        result = CliRunner().invoke(app, ["cluster", "check", "--address", "127.0.0.1:1"],
                                    env=env)
        assert result.exit_code == 1 and "cannot connect" in result.output

    def test_missing_ray_names_the_extra(self, env: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """Without Ray importable the check says how to install it."""
        monkeypatch.setitem(sys.modules, "ray", None)
        result = CliRunner().invoke(app, ["cluster", "check"], env=env)
        assert result.exit_code == 1 and "auto-dev[ray]" in result.output
