"""The review web page through real HTTP (no browser): login and cookies, CSRF, roles, escaping
of hostile candidate code, decisions, and tenants that never see each other."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from auto_dev.queries.audit import AuditLog
from auto_dev.queries.tokens import Role, TokenQueries
from auto_dev.workflows.diff import structural_diff
from tests.server._pages import csrf_of, login, page_service, seed, state
from tests.server._support import Service, seed_workflow, snapshot, workflow_doc


@dataclass
class World:
    svc: Service
    acme: dict[str, str]  # candidate ids of tenant acme: fixed, hostile
    beta: dict[str, str]

    def token(self, tenant: str, role: Role) -> str:
        return self.svc.tokens[(tenant, role)]

    def login(self, tenant: str = "acme", role: Role = Role.REVIEWER) -> httpx.Client:
        return login(self.svc, self.token(tenant, role))


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    """Tenants acme and beta, each with tool inc and two passed candidates."""
    with page_service(database_url) as svc:
        acme = seed(svc.autodev, "acme")
        beta = seed(svc.autodev, "beta")
        yield World(svc, acme, beta)


def _post(client: httpx.Client, path: str, csrf: str | None, **fields: str) -> httpx.Response:
    data = dict(fields)
    if csrf is not None:
        data["csrf"] = csrf
    return client.post(path, data=data)


class TestLogin:
    """A reviewer or admin token starts a cookie session; nothing else does."""

    def test_session_cookie_flags(self, world: World) -> None:
        client = httpx.Client(timeout=30, base_url=world.svc.url)
        form = client.get("/login")
        answer = client.post("/login", data={"token": world.token("acme", Role.REVIEWER),
                                             "csrf": csrf_of(form.text)})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = next(h for h in answer.headers.get_list("set-cookie")
                      if h.startswith("autodev_session="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain http here
        assert world.token("acme", Role.REVIEWER) not in cookie  # never the token itself
        assert "acme" in client.get("/").text

    def test_secure_cookie_over_https(self, world: World) -> None:
        client = httpx.Client(timeout=30, base_url=world.svc.url,
                              headers={"X-Forwarded-Proto": "https"})
        form = client.get("/login")
        # httpx keeps Secure cookies for https URLs: send the login cookie by hand.
        login_cookie = form.cookies["autodev_login"]
        answer = client.post("/login", data={"token": world.token("acme", Role.ADMIN),
                                             "csrf": csrf_of(form.text)},
                             headers={"Cookie": f"autodev_login={login_cookie}"})
        assert answer.status_code == 303
        cookie = next(h for h in answer.headers.get_list("set-cookie")
                      if h.startswith("autodev_session="))
        assert "secure" in {part.strip().lower() for part in cookie.split(";")}

    def test_ingest_unknown_and_forged_logins_are_refused(self, world: World) -> None:
        client = httpx.Client(timeout=30, base_url=world.svc.url)
        for token, status in ((world.token("acme", Role.INGEST), 403),
                              ("adt_" + "x" * 40, 401), ("", 401)):
            form = client.get("/login")
            answer = client.post("/login", data={"token": token, "csrf": csrf_of(form.text)})
            assert answer.status_code == status
            assert "autodev_session" not in answer.headers.get("set-cookie", "")
        assert client.get("/").status_code == 303
        fresh = httpx.Client(timeout=30, base_url=world.svc.url)  # no login cookie: no CSRF proof
        answer = fresh.post("/login", data={"token": world.token("acme", Role.ADMIN),
                                            "csrf": "made-up"})
        assert answer.status_code == 403 and "autodev_session" not in answer.headers.get(
            "set-cookie", "")

    def test_pages_need_a_session(self, world: World) -> None:
        client = httpx.Client(timeout=30, base_url=world.svc.url)
        for path in ("/", f"/candidates/{world.acme['fixed']}", "/tools", "/episodes",
                     "/agents", "/workflows", "/workflows/triage"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith(
                "/login?next=")
        client.cookies.set("autodev_session", "a.b.9999999999.forged")
        assert client.get("/").status_code == 303

    def test_next_is_local_only(self, world: World) -> None:
        client = httpx.Client(timeout=30, base_url=world.svc.url)
        form = client.get("/login")
        answer = client.post("/login", data={"token": world.token("acme", Role.REVIEWER),
                                             "csrf": csrf_of(form.text),
                                             "next": "//evil.example/x"})
        assert answer.headers["location"] == "/"

    def test_logout_and_revocation_end_the_session(self, world: World) -> None:
        client = world.login()
        kept = dict(client.cookies)
        answer = _post(client, "/logout", csrf_of(client.get("/").text))
        assert answer.status_code == 303
        replay = httpx.Client(timeout=30, base_url=world.svc.url, cookies=kept)
        assert replay.get("/").status_code == 303  # the old cookie is dead
        admin = world.login(role=Role.ADMIN)
        assert admin.get("/").status_code == 200
        TokenQueries(world.svc.database).revoke(
            next(t.id for t in TokenQueries(world.svc.database).list("acme")
                 if t.role is Role.ADMIN))
        assert admin.get("/").status_code == 303


class TestCsrf:
    """Every POST needs the session's CSRF token; without it nothing changes."""

    def test_missing_wrong_or_foreign_token(self, world: World) -> None:
        client = world.login()
        other = world.login(role=Role.ADMIN)
        foreign = csrf_of(other.get("/").text)
        before = snapshot(world.svc.autodev, "acme")
        path = f"/candidates/{world.acme['fixed']}/approve"
        for csrf in (None, "", "wrong", foreign):
            answer = _post(client, path, csrf, reason="ok")
            assert answer.status_code == 403, csrf
        answer = _post(client, "/tools/inc/rollback", None, reason="back")
        assert answer.status_code == 403
        assert client.post(path, json={"csrf": csrf_of(client.get("/").text)}
                           ).status_code == 415
        anonymous = httpx.Client(timeout=30, base_url=world.svc.url)
        assert _post(anonymous, path, "x", reason="ok").status_code == 401
        assert snapshot(world.svc.autodev, "acme") == before


def review_round_trip(world: World) -> None:
    """Reject one candidate, approve and promote the other, roll back, as acme's reviewer."""
    client = world.login()
    actor = world.svc.names[("acme", Role.REVIEWER)]
    fixed, hostile = world.acme["fixed"], world.acme["hostile"]
    csrf = csrf_of(client.get(f"/candidates/{hostile}").text)
    no_reason = _post(client, f"/candidates/{hostile}/reject", csrf, reason="  ")
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    assert state(world.svc.autodev, "acme")["statuses"][hostile] == "passed"
    assert _post(client, f"/candidates/{hostile}/reject", csrf,
                 reason="calls a subprocess").status_code == 303
    assert _post(client, f"/candidates/{fixed}/approve", csrf, reason="fixes it"
                 ).status_code == 303
    promoted = _post(client, f"/candidates/{fixed}/promote", csrf, reason="ship")
    assert promoted.status_code == 303
    assert promoted.headers["location"] == f"/candidates/{fixed}?done=promoted"
    page = client.get(promoted.headers["location"]).text
    assert "Candidate promoted." in page and "calls a subprocess" not in page
    held = state(world.svc.autodev, "acme")
    assert held["statuses"] == {fixed: "promoted", hostile: "rejected"}
    assert (hostile, "rejected", actor, "calls a subprocess") in held["decisions"]
    assert (fixed, "approved", actor, "fixes it") in held["decisions"]
    assert held["active"][0] == 2 and held["active"][2] == fixed
    again = _post(client, f"/candidates/{hostile}/approve", csrf, reason="oops")
    assert again.status_code == 409  # a rejected candidate stays rejected
    back = _post(client, "/tools/inc/rollback", csrf, reason="bad in production")
    assert back.status_code == 303 and "rolled back" in client.get(
        back.headers["location"]).text
    held = state(world.svc.autodev, "acme")
    assert held["active"][0] == 1 and held["statuses"][fixed] == "rolled_back"


class TestDecisions:
    """Approve, reject with a reason, promote and roll back, recorded with the token's name."""

    def test_review_round_trip(self, world: World) -> None:
        review_round_trip(world)

    @pytest.mark.postgres
    def test_review_round_trip_on_postgres(self, postgres_url: str) -> None:
        with page_service(postgres_url) as svc:
            review_round_trip(World(svc, seed(svc.autodev, "acme"), seed(svc.autodev, "beta")))
            assert set(state(svc.autodev, "beta")["statuses"].values()) == {"passed"}

    def test_queue_orders_by_risk_then_age_and_filters(self, world: World) -> None:
        later = asyncio.run(world.svc.autodev.propose_tool_change(
            "inc", "def inc(x):\n    y = x + 1\n    return y\n", actor="dev",
            reason="as safe as fixed, newer", tenant_id="acme")).candidate_id
        client = world.login()
        page = client.get("/").text
        # The riskiest first although it is newer; equal risks: the longest waiting first.
        assert page.index(world.acme["hostile"]) < page.index(world.acme["fixed"]) \
            < page.index(later)
        assert "risk-high" in page
        assert world.acme["fixed"] not in client.get("/", params={"status": "rejected"}).text
        skills = client.get("/", params={"kind": "skill_candidate"}).text
        assert world.acme["fixed"] not in skills and "Nothing waits" in skills
        assert client.get("/", params={"kind": "rocket"}).status_code == 422
        assert client.get("/", params={"status": "sideways"}).status_code == 422


class TestRoles:
    """A reviewer session cannot reach what needs an admin."""

    def test_maturity_is_admin_only(self, world: World) -> None:
        reviewer = world.login()
        page = reviewer.get("/agents").text
        assert "Set maturity" not in page
        before = snapshot(world.svc.autodev, "acme")
        answer = _post(reviewer, "/agents/agent-1/maturity", csrf_of(page),
                       capability="alpha_evolver", maturity="autonomous", reason="trust")
        assert answer.status_code == 403
        assert snapshot(world.svc.autodev, "acme") == before
        admin = world.login(role=Role.ADMIN)
        page = admin.get("/agents").text
        assert "Set maturity" in page
        answer = _post(admin, "/agents/agent-1/maturity", csrf_of(page),
                       capability="alpha_evolver", maturity="autonomous", reason="trust")
        assert answer.status_code == 303
        assert snapshot(world.svc.autodev, "acme")["maturity"] != before["maturity"]


class TestEscaping:
    """Candidate code is shown as text: its markup never becomes part of the page."""

    def test_script_in_candidate_code_is_inert(self, world: World) -> None:
        client = world.login()
        answer = client.get(f"/candidates/{world.acme['hostile']}")
        assert answer.status_code == 200
        assert "<script>" not in answer.text and "<b>bold</b>" not in answer.text
        assert "&lt;script&gt;document.title" in answer.text
        assert "script-src" not in answer.headers["content-security-policy"]  # none allowed
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert 'data-category="exec"' in answer.text  # the subprocess call is flagged
        assert "subprocess.run" in answer.text


class TestTenancy:
    """A session of one tenant never sees or changes another's: 404, as for a missing id."""

    def test_other_tenants_candidates_are_not_found(self, world: World) -> None:
        client = world.login("beta")
        csrf = csrf_of(client.get("/").text)
        theirs = world.acme["fixed"]
        assert theirs not in client.get("/", params={"status": "all"}).text
        assert client.get(f"/candidates/{theirs}").status_code == 404
        assert client.get(f"/candidates/{theirs[:8]}").status_code == 404
        before = snapshot(world.svc.autodev, "acme")
        for decision in ("approve", "reject", "promote"):
            answer = _post(client, f"/candidates/{theirs}/{decision}", csrf, reason="mine")
            assert answer.status_code == 404, decision
        assert snapshot(world.svc.autodev, "acme") == before
        own = world.beta["fixed"]
        assert client.get(f"/candidates/{own}").status_code == 200


class TestWorkflowVariants:
    """A workflow variant's page shows its definition and flags the tools it newly calls."""

    def test_definition_and_new_tools(self, world: World) -> None:
        autodev = world.svc.autodev
        autodev.configure_tenant("acme", actor="setup", reason="test setup", workflows=True)
        autodev.set_maturity("agent-1", "auto_dev.workflows", "supervised", actor="setup",
                             reason="test setup", tenant_id="acme")
        parent_definition = {"steps": [{"id": "fetch", "tool": "inc"}]}
        child_definition = {"steps": [{"id": "fetch", "tool": "inc"},
                                      {"id": "wipe", "tool": "delete_everything",
                                       "args": {"note": "<script>alert(1)</script>"}}]}
        with autodev.database.session() as session:
            parent = autodev.store.create_workflow_variant(
                session, tenant_id="acme", name="triage", definition=parent_definition,
                agent_id="agent-1")
            child = autodev.store.create_workflow_variant(
                session, tenant_id="acme", name="triage", definition=child_definition,
                agent_id="agent-1", parent_id=parent.id, operator="wf.add_step")
            child_id = child.id
        client = world.login()
        answer = client.get(f"/candidates/{child_id}")
        assert answer.status_code == 200
        assert 'id="workflow"' in answer.text and "delete_everything" in answer.text
        assert "<script>alert(1)</script>" not in answer.text
        new_tools = re.findall(r'class="flag new" data-category="tool">.*?<code>([^<]*)</code>',
                               answer.text, re.S)
        assert new_tools == ["delete_everything"]  # inc was already called by the parent
        queue = client.get("/", params={"kind": "workflow_variant", "status": "all"}).text
        assert child_id in queue and parent.id in queue


def _active_workflow_version(world: World, tenant: str = "acme") -> int:
    from sqlalchemy import select

    from auto_dev.models import WorkflowVersion

    with world.svc.database.session(readonly=True) as session:
        return int(session.scalars(select(WorkflowVersion.version).where(
            WorkflowVersion.tenant_id == tenant, WorkflowVersion.is_active.is_(True))).one())


class TestWorkflowPages:
    """The workflows list and a workflow's page: versions, definition, tasks, signals, and a
    rollback that needs the session's CSRF token and a reason."""

    def test_list_and_page(self, world: World) -> None:
        autodev = world.svc.autodev
        seed_workflow(autodev, "acme")
        seed_workflow(autodev, "beta", "beta_flow")
        autodev.add_workflow_task("triage", {"x": 1}, 2, tenant_id="acme")
        asyncio.run(autodev.record_signal(kind="business_value", value=7.5, workflow="triage",
                                          tenant_id="acme"))
        asyncio.run(autodev.record_signal(kind="<i>odd</i>", value=1, workflow="triage",
                                          tenant_id="acme"))
        client = world.login()
        listing = client.get("/workflows")
        assert listing.status_code == 200
        assert 'href="/workflows/triage"' in listing.text and "beta_flow" not in listing.text
        assert 'href="/workflows" class="here"' in listing.text  # the nav marks where we are
        page = client.get("/workflows/triage").text
        assert '<span id="active-version">v2</span>' in page
        rows = re.findall(r'<tr class="(active)?" data-version="(\d+)">', page)
        assert rows == [("", "1"), ("active", "2")]
        assert "Activate v1" in page and "Activate v2" not in page
        assert '<span id="tasks">1 task(s)</span>' in page
        assert "business_value" in page and "7.5" in page
        assert "<i>odd</i>" not in page and "&lt;i&gt;odd&lt;/i&gt;" in page
        assert "&#34;max_attempts&#34;: 3" in page  # the active definition, escaped JSON
        assert client.get("/workflows/beta_flow").status_code == 404
        assert client.get("/workflows/nope").status_code == 404

    def test_rollback_needs_csrf_and_a_reason(self, world: World) -> None:
        seed_workflow(world.svc.autodev, "acme")
        seed_workflow(world.svc.autodev, "beta", "triage")
        client = world.login()
        before = snapshot(world.svc.autodev, "acme")
        for csrf in (None, "wrong"):
            answer = _post(client, "/workflows/triage/rollback", csrf, version="1",
                           reason="back")
            assert answer.status_code == 403
        csrf = csrf_of(client.get("/workflows/triage").text)
        no_reason = _post(client, "/workflows/triage/rollback", csrf, version="1", reason=" ")
        assert no_reason.status_code == 422 and "reason" in no_reason.text
        bad_version = _post(client, "/workflows/triage/rollback", csrf, version="one",
                            reason="back")
        assert bad_version.status_code == 422 and "version" in bad_version.text
        assert snapshot(world.svc.autodev, "acme") == before
        done = _post(client, "/workflows/triage/rollback", csrf, version="1",
                     reason="v2 loops")
        assert done.status_code == 303
        assert done.headers["location"] == "/workflows/triage?done=rolled_back"
        page = client.get(done.headers["location"]).text
        assert "Workflow rolled back." in page and '<span id="active-version">v1</span>' in page
        assert _active_workflow_version(world) == 1
        assert _active_workflow_version(world, "beta") == 2  # beta's namesake untouched
        actor = world.svc.names[("acme", Role.REVIEWER)]
        audit = [e for e in AuditLog(world.svc.database, "acme").page(
            action="workflow.rolled_back").items]
        assert [(e.actor, e.reason) for e in audit] == [(actor, "v2 loops")]

    def test_variant_page_shows_the_structural_diff(self, world: World) -> None:
        autodev = world.svc.autodev
        _, active = seed_workflow(autodev, "acme")
        autodev.configure_tenant("acme", actor="setup", reason="test setup", workflows=True)
        autodev.set_maturity("agent-1", "auto_dev.workflows", "supervised", actor="setup",
                             reason="test setup", tenant_id="acme")
        variant = workflow_doc("triage")
        variant["steps"].append({"id": "note", "set": {"msg": "<b>done</b>"}})
        with autodev.database.session() as session:
            candidate_id = autodev.store.create_workflow_variant(
                session, tenant_id="acme", name="triage", definition=variant,
                agent_id="agent-1", operator="wf.add_step").id
        page = world.login().get(f"/candidates/{candidate_id}").text
        lines = re.findall(r'<ul class="structural">(.*?)</ul>', page, re.S)
        assert lines, "no structural diff on the page"
        shown = [html.unescape(x) for x in re.findall(r"<li><code>(.*?)</code></li>", lines[0])]
        assert shown == structural_diff(active, variant).render_lines()
        assert any(x.startswith("+ added step note") for x in shown)
        assert "<b>done</b>" not in page
        assert 'href="/workflows/triage"' in page  # the workflow's versions are a click away


class TestLLMExchange:
    """A candidate a model wrote shows the model, its tokens and its cost from the ledger."""

    def test_cost_and_calls(self, world: World) -> None:
        from auto_dev.models import LLMCall

        autodev = world.svc.autodev
        with autodev.database.session() as session:
            call = LLMCall(tenant_id="acme", model="openai/gpt-test", prompt_tokens=321,
                           completion_tokens=54, cost_usd=0.0042, latency_s=1.5, status="ok")
            session.add(call)
            session.flush()
            tool_id = autodev.review.show_tool("acme", "inc").tool.id
            row = autodev.store.create_tool_mutation(
                session, tenant_id="acme", tool_id=tool_id, agent_id="agent-1",
                code="def inc(x):\n    return x + 1  # from the model\n", operator="llm.diff",
                details={"llm_call_id": call.id, "model": "openai/gpt-test",
                         "llm_cost_usd": 0.01})
            candidate_id = row.id
        page = world.login().get(f"/candidates/{candidate_id}").text
        assert 'id="llm"' in page and "openai/gpt-test" in page
        assert '<span id="llm-cost">$0.0042</span>' in page and "321" in page
        fixed_page = world.login().get(f"/candidates/{world.acme['fixed']}").text
        assert 'id="llm"' not in fixed_page  # a human wrote that one
