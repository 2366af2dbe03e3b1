"""The browser side of the dashboard tests: a page in its own context, and the axe-core check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import ARTIFACTS, AXE


class Browser:
    """One page in a fresh context; collects uncaught page errors so a test can assert there were none."""

    def __init__(
        self,
        browser: Any,
        url: str,
        viewport: dict[str, int],
        scheme: str = "light",
        timezone: str | None = None,
    ) -> None:
        # bypass_csp only so the test can inject axe-core; the app itself runs under its CSP
        self.context = browser.new_context(
            viewport=viewport, color_scheme=scheme, bypass_csp=True, timezone_id=timezone
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.url = url
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("requestfailed", lambda r: self.console.append(f"request failed: {r.url} {r.failure}"))

    def _network_changed(self, since: int) -> bool:
        return any("ERR_NETWORK_CHANGED" in line for line in self.console[since:])

    def _load(self, action: Any, selector: str) -> None:
        """Run ``action`` until ``selector`` shows. Chromium aborts requests in flight with
        ERR_NETWORK_CHANGED whenever any interface on the machine changes (other tests create and
        delete netns, veths and bridges): only then is the page loaded again, at most twice."""
        for attempt in range(3):
            mark = len(self.console)
            action()
            try:
                self.page.wait_for_selector(selector)
            except Exception as exc:
                if attempt < 2 and self._network_changed(mark):
                    action = self.page.reload
                    continue
                raise AssertionError(f"{selector} never showed; browser said: {self.console}") from exc
            if attempt < 2 and self._network_changed(mark):
                action = self.page.reload
                continue
            return

    def login(self, username: str, password: str, tenant: str | None = None) -> None:
        self._load(lambda: self.page.goto(f"{self.url}/"), "#username")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        if tenant is not None:
            self.page.fill("#tenant", tenant)
        self.page.click("form button[type=submit]")
        self.page.wait_for_selector("[data-testid=who]", state="attached")
        self.ready()

    def go(self, route: str) -> None:
        self.page.evaluate("delete document.querySelector('main')?.dataset.ready")
        self._load(lambda: self.page.goto(f"{self.url}/#{route}"), "main[data-ready=true]")

    def ready(self) -> None:
        self.page.wait_for_selector("main[data-ready=true]")

    def follow(self, link: str | Callable[[], Any]) -> None:
        """Follow a link to another page (a selector to click, or the click itself) and wait until
        that page has rendered; the page left keeps its ready mark until the router clears it, so
        it goes first (else ``ready`` would answer at once, on an empty ``main``)."""
        self.page.evaluate("delete document.querySelector('main')?.dataset.ready")
        if isinstance(link, str):
            self.page.click(link)
        else:
            link()
        self.ready()

    def main_text(self) -> str:
        return str(self.page.inner_text("main"))

    def close(self) -> None:
        self.context.close()


def axe_violations(page: Any, only_colours: bool = False) -> list[str]:
    """Serious and critical axe-core violations; ``only_colours``: the contrast rules alone (what a
    theme changes), to keep the second theme's pass short."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async (onlyColours) => {
            const opts = {resultTypes: ['violations']};
            if (onlyColours) opts.runOnly = ['color-contrast', 'link-in-text-block'];
            const r = await axe.run(document, opts);
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => `${v.id} (${v.impact}): `
                + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '));
        }""",
        only_colours,
    )
    return list(found)


def page_problems(b: Browser, route: str, name: str, size: str, scheme: str) -> list[str]:
    """Screenshot the page shown (``<name>-<size>-<scheme>.png``), then what is wrong with it: axe-core
    violations and a width that scrolls sideways (nothing may, on a phone)."""
    b.page.screenshot(path=str(ARTIFACTS / f"{name}-{size}-{scheme}.png"), full_page=True)
    problems = [f"{route} {size} {scheme}: {v}" for v in axe_violations(b.page, scheme == "dark")]
    overflow = b.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"{route} {size} {scheme}: {overflow}px wider than the window")
    return problems
