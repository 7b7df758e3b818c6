"""The demo's small agent platform: three tools with real bugs, two agents, and a day of episodes.

* ``apply_discount`` adds the discount instead of subtracting it (an arithmetic operator bug):
  AlphaEvolver repairs it after the support agent's failures.
* ``clamp`` uses ``max`` where ``min`` belongs: a trainee agent (maturity *student*) fails with it
  first and the gate refuses to evolve on its behalf; then the support agent fails too and the
  cycle runs.
* ``average`` divides by zero on an empty basket. The failures come from a task with no
  dedicated tool; Memento groups them, builds regression tests from them, retrieves the closest
  tool (``average``) and repairs it into a skill candidate.

Then a support workflow (``refund_support``) with a flaky tool lacking a retry and a branch on
the wrong field fails for a morning; WorkflowEvolver repairs it offline (the workflow chapter).

The ``clamp`` fix is then rolled back although it is correct: the rollback is there to show
how a reviewer undoes a promotion, and :data:`ROLLBACK_REASON` (recorded) says so.
"""

from __future__ import annotations

from typing import Any

TOOLS: list[dict[str, Any]] = [
    {
        "name": "apply_discount",
        "description": "Price after a percentage discount, rounded to cents.",
        "entrypoint": "apply_discount",
        "code": (
            "def apply_discount(price, percent):\n"
            '    """Return the price after taking off `percent` percent."""\n'
            "    return round(price * (1 + percent / 100), 2)\n"
        ),
        "tests": [
            {"args": [100.0, 10], "expected": 90.0},
            {"args": [50.0, 0], "expected": 50.0},
            {"args": [200.0, 50], "expected": 100.0},
        ],
    },
    {
        "name": "clamp",
        "description": "Limit a value to the closed range low..high.",
        "entrypoint": "clamp",
        "code": (
            "def clamp(value, low, high):\n"
            "    return max(low, max(value, high))\n"
        ),
        "tests": [
            {"args": [5, 0, 10], "expected": 5},
            {"args": [-3, 0, 10], "expected": 0},
        ],
    },
    {
        "name": "average",
        "description": "Arithmetic mean (average) of a basket of order values.",
        "entrypoint": "average",
        "code": (
            "def average(values):\n"
            "    return sum(values) / len(values)\n"
        ),
        "tests": [
            {"args": [[1, 2, 3]], "expected": 2.0},
            {"args": [[4]], "expected": 4.0},
        ],
    },
]

AGENTS: dict[str, dict[str, str]] = {
    # agent key -> capability -> maturity
    "support-bot": {
        "auto_dev.alpha_evolver": "supervised",
        "auto_dev.memento_skills": "intern",
        "auto_dev.workflows": "supervised",
    },
    "checkout-bot": {
        "auto_dev.alpha_evolver": "supervised",
        "auto_dev.memento_skills": "intern",
    },
    "trainee-bot": {},
}

_ZERO = (
    'Traceback (most recent call last):\n  File "average.py", line 2, in average\n'
    "ZeroDivisionError: division by zero"
)

EPISODES: list[dict[str, Any]] = [
    {"agent": "support-bot", "task": "Quote a 10% loyalty discount on a 100.00 order",
     "success": True, "tool_name": "clamp", "inputs": {"args": [7, 0, 10]}, "output": 10},
    {"agent": "trainee-bot", "task": "Keep the volume slider within 0..10",
     "success": False, "tool_name": "clamp", "inputs": {"args": [42, 0, 10]}, "expected": 10,
     "error_trace": "AssertionError: clamp(42, 0, 10) returned 42, expected 10"},
    {"agent": "support-bot", "task": "Quote a 10% loyalty discount on a 100.00 order",
     "success": False, "tool_name": "apply_discount", "inputs": {"args": [100.0, 10]},
     "expected": 90.0, "error_trace": "AssertionError: quoted 110.0, customer expected 90.0"},
    {"agent": "support-bot", "task": "Quote a 25% discount on an 80.00 order",
     "success": False, "tool_name": "apply_discount", "inputs": {"args": [80.0, 25]},
     "expected": 60.0, "error_trace": "AssertionError: quoted 100.0, customer expected 60.0"},
    {"agent": "checkout-bot", "task": "Compute the average basket value for an empty cart",
     "success": False, "inputs": {"args": [[]]}, "expected": 0.0, "error_trace": _ZERO},
    {"agent": "support-bot", "task": "Clamp a rating to 1..5",
     "success": False, "tool_name": "clamp", "inputs": {"args": [9, 1, 5]}, "expected": 5,
     "error_trace": "AssertionError: clamp(9, 1, 5) returned 9, expected 5"},
    {"agent": "checkout-bot", "task": "Compute the average basket value for a new customer",
     "success": False, "inputs": {"args": [[]]}, "expected": 0.0, "error_trace": _ZERO},
    {"agent": "checkout-bot", "task": "Compute the average basket value",
     "success": True, "tool_name": "average", "inputs": {"args": [[10, 20]]}, "output": 15.0},
]

#: Agents whose promoted fixes are then used: (agent the fix was made for, capability, tool,
#: the agent using it). Their uses are the evidence that graduates them.
GRADUATES: list[tuple[str, str, str, str]] = [
    ("support-bot", "auto_dev.alpha_evolver", "apply_discount", "support-bot"),
    ("checkout-bot", "auto_dev.memento_skills", "average", "checkout-bot"),
]

TENANT_SETTINGS: dict[str, Any] = {
    "enabled": True,
    "alpha_evolver": True,
    "memento_skills": True,
    "workflows": True,
    "auto_promotion": False,
    "background_evolution": False,
}

#: The tool whose (correct) fix the demo rolls back, to show how a promotion is undone.
ROLLBACK_TOOL = "clamp"
ROLLBACK_REASON = ("demonstration: showing how a reviewer undoes a promotion; the fix itself "
                   "passed review")


# -- the workflow chapter --------------------------------------------------------------------
# The support team's refund workflow has two faults: get_order times out now and then and the
# step has no retry, and the branch tests payment_status where the order's status belongs (every
# shipped order is cancelled instead of returned). WorkflowEvolver repairs both offline.

_ORDERS = {
    "A1": ("shipped", "paid"), "A2": ("processing", "paid"), "A3": ("shipped", "pending"),
    "A4": ("processing", "pending"), "A5": ("shipped", "refunded"), "A6": ("delivered", "paid"),
}

WORKFLOW_TOOLS: list[dict[str, str]] = [
    {
        "name": "get_order",
        "description": "The order service's record of one order (it times out now and then).",
        "code": (
            "def get_order(order_id):\n"
            "    import random\n"
            "    if random.random() < 0.3:\n"
            "        raise TimeoutError('order service did not answer within 2 s')\n"
            f"    orders = {({k: {'id': k, 'status': s, 'payment_status': p} for k, (s, p) in _ORDERS.items()})!r}\n"  # noqa: E501
            "    return orders[order_id]\n"
        ),
    },
    {
        "name": "start_return",
        "description": "Open a return for a shipped order: the customer gets a label.",
        "code": (
            "def start_return(order):\n"
            "    return {'action': 'return', 'order_id': order['id'],\n"
            "            'label': 'RMA-' + order['id']}\n"
        ),
    },
    {
        "name": "cancel_order",
        "description": "Cancel an order that has not left the warehouse.",
        "code": (
            "def cancel_order(order_id):\n"
            "    return {'action': 'cancel', 'order_id': order_id}\n"
        ),
    },
]

SUPPORT_WORKFLOW: dict[str, Any] = {
    "name": "refund_support",
    "description": "Returns for shipped orders, cancellations for the others.",
    "input": {"required": ["order_id"]},
    "steps": [
        {"id": "order", "tool": "get_order", "args": {"order_id": "${input.order_id}"}},
        {"id": "route", "switch": [
            {"when": "steps.order.payment_status == 'shipped'",
             "steps": [{"id": "ret", "tool": "start_return",
                        "args": {"order": "${steps.order}"}}]},
            {"otherwise": [{"id": "cancel", "tool": "cancel_order",
                            "args": {"order_id": "${input.order_id}"}}]}]},
    ],
    "output": "steps.route",
}


def _refund_run(order_id: str, outcome: str) -> dict[str, Any]:
    """One recorded run: ``ok``, ``cancelled`` (a shipped order cancelled) or ``timeout``."""
    shipped = _ORDERS[order_id][0] == "shipped"
    expected = ({"action": "return", "order_id": order_id, "label": f"RMA-{order_id}"}
                if shipped else {"action": "cancel", "order_id": order_id})
    run: dict[str, Any] = {"agent": "support-bot", "task": f"Handle the refund request for "
                           f"order {order_id}", "workflow": SUPPORT_WORKFLOW["name"],
                           "inputs": {"order_id": order_id}, "expected": expected,
                           "success": outcome == "ok"}
    if outcome == "ok":
        run["output"] = expected
    elif outcome == "cancelled":
        run["output"] = {"action": "cancel", "order_id": order_id}
        run["error_trace"] = "the customer's shipped order was cancelled instead of returned"
    else:
        run["error_trace"] = ("step order: 'get_order' failed (error): TimeoutError: order "
                              "service did not answer within 2 s")
    return run


WORKFLOW_RUNS: list[dict[str, Any]] = [
    _refund_run("A1", "cancelled"), _refund_run("A2", "ok"), _refund_run("A3", "cancelled"),
    _refund_run("A4", "timeout"), _refund_run("A5", "cancelled"), _refund_run("A6", "ok"),
]

#: The seed of the demo's workflow search (the flaky tool fails the same calls every run).
WORKFLOW_SEED = 8
#: The run of the repaired workflow the demo shows: a shipped order gets its return label.
WORKFLOW_CHECK_INPUT: dict[str, Any] = {"order_id": "A1"}
