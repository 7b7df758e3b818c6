"""The review page clicked through in headless Chromium (Debian's, driven by Playwright): a whole
review, then what the database holds. A screenshot of each page is kept under the artifacts
directory (``AUTO_DEV_ARTIFACTS``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auto_dev.queries.tokens import Role
from tests.server._pages import FIXED, page_service, seed, state
from tests.server._support import Service, seed_workflow

pytestmark = pytest.mark.browser


@pytest.fixture
def page(chromium: str) -> Iterator[Any]:
    """A fresh browser page (JavaScript on, as a reviewer's browser has it)."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def reviewed(database_url: str) -> Iterator[tuple[Service, dict[str, str]]]:
    """A service whose tenant acme has two passed candidates for tool inc (beta has its own)
    and workflow triage at v2."""
    with page_service(database_url) as svc:
        ids = seed(svc.autodev, "acme")
        seed(svc.autodev, "beta")
        seed_workflow(svc.autodev, "acme")
        yield svc, ids


class TestReviewInTheBrowser:
    """A reviewer logs in, reads the queue and the candidates, rejects one and ships another."""

    def test_whole_review(self, page: Any, reviewed: tuple[Service, dict[str, str]],
                          artifacts: Path) -> None:
        svc, ids = reviewed
        shots = artifacts / "review-page"
        shots.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            assert (shots / f"{name}.png").stat().st_size > 1000

        # Login: an ingest token is refused, a reviewer's opens the queue.
        page.goto(svc.url + "/")
        assert page.url.startswith(svc.url + "/login")
        shot("01-login")
        page.fill("#token", svc.tokens[("acme", Role.INGEST)])
        page.click("#login")
        assert "cannot review" in page.inner_text("#login-error")
        page.fill("#token", svc.tokens[("acme", Role.REVIEWER)])
        page.click("#login")
        page.wait_for_selector("#queue")
        assert page.url == svc.url + "/"
        assert "tenant acme" in page.inner_text("#whoami")
        shot("02-queue")

        # The queue: the risky candidate first, only acme's.
        rows = page.locator("#queue tr.candidate")
        assert rows.count() == 2
        assert rows.nth(0).get_attribute("data-id") == ids["hostile"]
        assert "high" in rows.nth(0).inner_text() and "exec" in rows.nth(0).inner_text()

        # The risky candidate: diff, flags, objectives; its <script> stays text.
        rows.nth(0).locator("a").click()
        page.wait_for_selector("#diff")
        assert page.title() != "pwned"
        assert page.locator("script").count() == 0
        assert "<script>document.title" in page.inner_text("#diff")
        assert page.locator("table.sidediff tr.insert").count() >= 1
        flags = page.inner_text("#flags")
        assert "subprocess.run" in flags and "exec" in flags
        assert "pass_rate" in page.inner_text("#objectives")
        assert "inc v1" in page.inner_text("#lineage")
        shot("03-candidate-risky")
        page.fill("#reject-reason", "calls a subprocess")
        page.click("#reject")
        page.wait_for_selector("#done")
        assert page.inner_text("#status") == "rejected"
        assert "calls a subprocess" in page.inner_text("#decisions")
        shot("04-rejected")

        # The good one: approve, then promote.
        page.click("text=Queue")
        page.wait_for_selector("#queue")
        assert page.locator("#queue tr.candidate").count() == 1
        page.locator(f'#queue tr[data-id="{ids["fixed"]}"] a').click()
        page.wait_for_selector("#diff")
        assert "return x + 1" in page.inner_text("#diff")
        shot("05-candidate-fixed")
        page.fill("#approve-reason", "fixes the off-by-one")
        page.click("#approve")
        page.wait_for_selector("#promote")
        assert page.inner_text("#status") == "approved"
        page.fill("#promote-reason", "ship it")
        page.click("#promote")
        page.wait_for_selector("#done")
        assert page.inner_text("#status") == "promoted"
        shot("06-promoted")

        # The other pages: tools (now at v2), episodes, agents; then log out.
        page.goto(svc.url + "/tools/inc")
        assert page.inner_text("#active-version") == "v2"
        assert "return x + 1" in page.inner_text("#active-code")
        shot("07-tool")
        page.goto(svc.url + "/tools")
        shot("08-tools")
        page.goto(svc.url + "/episodes")
        shot("09-episodes")
        page.goto(svc.url + "/agents")
        assert "agent-1" in page.inner_text("#agents")
        assert "Set maturity" not in page.content()  # a reviewer has no admin form
        shot("10-agents")

        # Workflows: the list, then triage rolled back from v2 to v1.
        page.click("text=Workflows")
        page.click("#workflows a")
        page.wait_for_selector("#versions")
        assert page.inner_text("#active-version") == "v2"
        assert '"max_attempts": 3' in page.inner_text("#definition")
        shot("11-workflow")
        page.fill("#reason-v1", "the retry hides a bug")
        page.click("#activate-v1")
        page.wait_for_selector("#done")
        assert page.inner_text("#active-version") == "v1"
        shot("12-workflow-rolled-back")
        page.click("#logout")
        page.wait_for_selector("#token")
        page.goto(svc.url + "/")
        assert page.url.startswith(svc.url + "/login")
        assert errors == []

        # What the database holds afterwards.
        actor = svc.names[("acme", Role.REVIEWER)]
        held = state(svc.autodev, "acme")
        assert held["statuses"] == {ids["fixed"]: "promoted", ids["hostile"]: "rejected"}
        assert (ids["hostile"], "rejected", actor, "calls a subprocess") in held["decisions"]
        assert (ids["fixed"], "approved", actor, "fixes the off-by-one") in held["decisions"]
        assert held["active"] == (2, FIXED, ids["fixed"])
        assert svc.autodev.workflow_definition("triage", tenant_id="acme")["steps"][0].get(
            "retry") is None  # v1 is active again
        untouched = state(svc.autodev, "beta")
        assert set(untouched["statuses"].values()) == {"passed"} and untouched["active"][0] == 1
