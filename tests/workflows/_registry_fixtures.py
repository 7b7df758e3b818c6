"""A support workflow, its tools, and a facade over a migrated SQLite file for registry tests."""

from __future__ import annotations

import copy
from typing import Any

from auto_dev.config import load_settings
from auto_dev.db import Database
from auto_dev.service import AutoDev

TOOLS = {
    "get_order": "def get_order(order_id):\n    return {'id': order_id, 'status': 'shipped'}\n",
    "start_return": "def start_return(order):\n    return 'return started'\n",
    "cancel_order": "def cancel_order(order_id):\n    return 'cancelled'\n",
}

SUPPORT: dict[str, Any] = {
    "name": "refund_request",
    "description": "Refund or cancel an order.",
    "input": {"required": ["order_id"]},
    "steps": [
        {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"}},
        {"id": "route", "switch": [
            {"when": "steps.order.state == 'shipped'",
             "steps": [{"id": "ret", "tool": "start_return", "args": {"order": "${steps.order}"}}]},
            {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                            "args": {"order_id": "${input.order_id}"}}]}]},
    ],
    "output": "steps.route",
}


def support(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the support workflow with top-level ``changes``."""
    return {**copy.deepcopy(SUPPORT), **changes}


def fixed_support() -> dict[str, Any]:
    """The support workflow with its branch on the right field and a retry on get_order."""
    doc = support()
    doc["steps"][0]["retry"] = {"max_attempts": 3, "backoff_s": 0, "on": ["error"]}
    doc["steps"][1]["switch"][0]["when"] = "steps.order.status == 'shipped'"
    return doc


def register_tools(autodev: AutoDev, tenant_id: str | None = None) -> None:
    for name, code in TOOLS.items():
        autodev.register_tool(name, code, name, tenant_id=tenant_id)


async def make_autodev(database: Database, database_url: str) -> AutoDev:
    """A facade for tenant ``t1`` (no engines) with the support workflow's tools."""
    settings = load_settings(database_url=database_url, tenant="t1")
    instance = AutoDev(settings, database=database, load_plugins=False, builtin_engines=False)
    register_tools(instance)
    return instance
