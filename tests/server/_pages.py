"""Support for the review page tests: a service whose sandbox scores the candidates of tool
``inc`` without running them, candidates proposed through the facade, and a browser-less login.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlalchemy import select

from auto_dev._testing_sandbox import ScriptedSandbox
from auto_dev.config import load_settings
from auto_dev.models import ReviewDecision, Tool, ToolMutation, ToolVersion
from auto_dev.sandbox.base import Case
from auto_dev.server import create_app
from auto_dev.service import AutoDev
from tests.server._support import ON, TOOL_CODE, Service, running

SECRET = "review-page-tests-" + "s" * 32
FIXED = "def inc(x):\n    return x + 1\n"
#: Passes the tests too, but reaches for a shell, and carries markup a page must not run.
HOSTILE = ('import subprocess\n\n\ndef inc(x):\n    """</td><script>document.title = "pwned"'
           '</script>"""\n    subprocess.run(["true"])\n    return x + 1  # <b>bold</b>\n')
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def score(code: str, case: Case) -> Any:
    """What ``inc`` returns, read from the code's text (the sandbox never runs it)."""
    step = 1 if "x + 1" in code else 2
    return case.args[0] + step


@contextlib.contextmanager
def page_service(database_url: str, tenants: tuple[str, ...] = ("acme", "beta")
                 ) -> Iterator[Service]:
    settings = load_settings(database_url=database_url, tenant="default", sandbox="process",
                             cycle_poll_s=0.2, server_session_secret=SECRET)
    autodev = AutoDev(settings, sandbox=ScriptedSandbox(score), load_plugins=False)
    with running(create_app(autodev=autodev, run_scheduler=False)) as url:
        svc = Service(url, autodev)
        for tenant in tenants:
            svc.add_tokens(tenant)
        yield svc


async def propose(autodev: AutoDev, tenant: str) -> dict[str, str]:
    """Tool ``inc`` (v1 adds two) with two tests, agent-1, and two passed manual candidates
    made through the facade: ``fixed`` (adds one) and ``hostile`` (adds one and calls a
    subprocess)."""
    autodev.configure_tenant(tenant, actor="setup", reason="test setup", **ON)
    autodev.register_tool("inc", TOOL_CODE, "inc", tenant_id=tenant,
                          tests=[{"args": [1], "expected": 2}, {"args": [5], "expected": 6}])
    autodev.set_maturity("agent-1", "auto_dev.alpha_evolver", "supervised", actor="setup",
                         reason="test setup", tenant_id=tenant)
    ids = {}
    for label, code in (("fixed", FIXED), ("hostile", HOSTILE)):
        change = await autodev.propose_tool_change("inc", code, actor="dev", reason=label,
                                                   tenant_id=tenant)
        ids[label] = change.candidate_id
    return ids


def seed(autodev: AutoDev, tenant: str) -> dict[str, str]:
    """:func:`propose`, run on a thread of its own (the test's thread may have a loop, e.g.
    Playwright's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, propose(autodev, tenant)).result()


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "the page has no CSRF field"
    return html.unescape(found.group(1))


def login(svc: Service, token: str) -> httpx.Client:
    """A client logged in with ``token`` (cookies kept), through the login form."""
    client = httpx.Client(base_url=svc.url, timeout=30)
    form = client.get("/login")
    answer = client.post("/login", data={"token": token, "csrf": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    return client


def state(autodev: AutoDev, tenant: str) -> dict[str, Any]:
    """Candidate statuses, decisions (decision, actor, reason) and the active version of inc."""
    with autodev.database.session(readonly=True) as session:
        statuses = dict(session.execute(select(ToolMutation.id, ToolMutation.status).where(
            ToolMutation.tenant_id == tenant)).all())
        decisions = sorted((d.candidate_id, d.decision, d.actor, d.reason)
                           for d in session.scalars(select(ReviewDecision).where(
                               ReviewDecision.tenant_id == tenant)))
        active = session.scalars(select(ToolVersion).join(Tool, Tool.id == ToolVersion.tool_id)
                                 .where(Tool.tenant_id == tenant, Tool.name == "inc",
                                        ToolVersion.is_active.is_(True))).one_or_none()
        return {"statuses": statuses, "decisions": decisions,
                "active": (active.version, active.code, active.source_id) if active else None}
