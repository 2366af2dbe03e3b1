"""The dashboard in a real browser (Debian's Chromium) against a real server and real QEMU guests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import stat
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import wait_task
from tests.e2e.browser import Browser, axe_violations, page_problems
from tests.e2e.conftest import ARTIFACTS, DESKTOP, PASSWORD, PHONE, Cluster
from tests.rfb import RFBClient

T = TypeVar("T")
BOOT_S = 120_000  # ms: a TCG guest on a busy 2-core machine


def _wait_xterm(page: Any, pattern: str, timeout_ms: int) -> None:
    """Wait until the terminal's rendered rows match ``pattern`` (a JavaScript regex, multiline)."""
    page.wait_for_function(
        "p => new RegExp(p, 'm').test(document.querySelector('.xterm-rows')?.innerText || '')",
        arg=pattern,
        timeout=timeout_ms,
    )


def _member_token(cluster: Cluster, tenant: str) -> str:
    return cluster.server.token(cluster.tenants[tenant][0], PASSWORD, tenant)


@pytest.fixture(scope="module")
def alpha_vm(cluster: Cluster) -> Iterator[dict[str, str]]:
    """A running VM of tenant alpha, made through the API."""
    with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
        r = alpha.post("/v1/vms", json={"name": "alpha-secret", "image": "test-guest", "flavor": "tiny"})
        assert r.status_code == 202, r.text
        assert wait_task(alpha, r.json()["task_id"], 180)["state"] == "succeeded"
        yield {"id": r.json()["vm"]["id"], "task_id": r.json()["task_id"]}


def test_create_watch_console_stop_delete(cluster: Cluster, browser: Any) -> None:
    username, _ = cluster.tenants["alpha"]
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(username, PASSWORD, tenant="alpha")
        b.go("/vms/new")
        # the API's own validation message appears next to the field it names
        with httpx.Client(base_url=cluster.server.url, timeout=30) as raw:
            token = _member_token(cluster, "alpha")
            bad = raw.post(
                "/v1/vms",
                json={"name": "Bad_Name", "image": "test-guest", "flavor": "tiny"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
        reason = next(e["reason"] for e in bad["errors"] if e["field"] == "body.name")
        page.fill("#f-name", "Bad_Name")
        page.select_option("#f-image", "test-guest")
        page.select_option("#f-flavor", "tiny")
        page.click("form button[type=submit]")
        page.wait_for_selector("#f-name[aria-invalid=true]")
        assert page.inner_text("#f-name-error") == reason
        # said once: under the field, not again in a banner (issue 17 item 4)
        assert reason.startswith("use 1-63 lowercase letters") and page.inner_text("main").count(reason) == 1

        page.fill("#f-name", "web-e2e")
        page.fill("#f-user_data", "hello from the browser")
        page.evaluate("window.__sameDocument = true")
        page.click("form button[type=submit]")
        page.wait_for_url("**/#/vms/vm-*")
        b.ready()
        # building -> running arrives over the event stream: no reload (the marker survives)
        page.wait_for_selector("[data-testid=vm-state] .badge[data-state=running]", timeout=BOOT_S)
        assert page.evaluate("window.__sameDocument") is True
        vm_id = page.url.rsplit("/", 1)[1]
        page.wait_for_function(
            "() => /vm.create\\s+succeeded\\s+100%/.test(document.querySelector('main').innerText)",
            timeout=30_000,
        )

        # metrics: the charts get the agent's samples every second
        page.wait_for_function(
            "() => /CPU \\d/.test(document.querySelector('.chart .value')?.textContent || '')", timeout=30_000
        )

        # the serial console in xterm.js: the boot marker, then a command typed in the browser
        page.click("text=Open console")
        _wait_xterm(page, "NOVACRON-GUEST-UP hostname=web-e2e", BOOT_S)
        _wait_xterm(page, "^user-data: hello from the browser", 30_000)
        page.wait_for_selector("text=Connected")
        _wait_xterm(page, "web-e2e#", BOOT_S)  # the guest's shell prompt
        page.click(".xterm")
        page.keyboard.type("echo typed-$((6*7))\n")
        _wait_xterm(page, "^typed-42$", 30_000)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "vm-console-desktop-light.png"), full_page=True)
        _serial_full_screen(page)
        _graphical_console(page)

        # the machine it runs as (a starter flavor and an image that set none: pc with SeaBIOS)
        page.wait_for_selector("[data-testid=vm-details] dd:text-is('pc · BIOS')")
        # the HA flag, changed with If-Match behind a confirmation
        page.click("main button:text-is('Turn HA on')")
        page.click("dialog button.primary")
        page.wait_for_selector("[data-testid=vm-details] dd:has-text('restart elsewhere (priority 0)')")
        with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
            assert alpha.get(f"/v1/vms/{vm_id}").json()["ha"] is True

        # stop, with confirmation; the state changes live
        page.click("main button:text-is('Stop')")
        page.click("dialog button.danger")
        page.wait_for_selector("[data-testid=vm-state] .badge[data-state=stopped]", timeout=90_000)
        # the serial console saw its connection end and keeps trying to reconnect
        page.wait_for_selector("text=/Console closed .*reconnecting in/", timeout=30_000)
        assert page.is_visible(".card:has-text('Serial console') button:text-is('Reconnect')")

        page.click("main button:text-is('Delete')")
        page.click("dialog button.danger")
        page.wait_for_selector("h1:text('web-e2e was deleted')", timeout=90_000)
        deadline = time.monotonic() + 30
        with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
            while alpha.get(f"/v1/vms/{vm_id}").status_code != 404 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert alpha.get(f"/v1/vms/{vm_id}").status_code == 404
        assert b.errors == []
    finally:
        b.close()


def _serial_full_screen(page: Any) -> None:
    """The serial console's Full screen button puts the terminal on the whole screen."""
    page.click(".card:has-text('Serial console') button:text-is('Full screen')")
    page.wait_for_function("() => document.fullscreenElement?.classList.contains('console-wrap')")
    page.evaluate("document.exitFullscreen()")
    page.wait_for_function("() => !document.fullscreenElement")


def _graphical_console(page: Any) -> None:
    """noVNC shows the guest's VGA screen; what the guest draws there appears; Ctrl-Alt-Del and
    the keyboard reach the guest's keyboard; full screen works."""
    page.click("text=Open graphical console")
    page.wait_for_selector("[data-testid=vm-vnc] :text('Connected')")
    # the guest's kernel drives the VGA (bochs-drm) with its console on it (console=tty0): the
    # screen is in the kernel's framebuffer mode, not blank: the kernel's banner and the guest's boot
    # line in its top rows (see docs/architecture.md, Consoles)
    page.wait_for_function(f"() => ({_CANVAS}).width >= 1024", timeout=30_000)
    page.wait_for_function(f"() => ({_PIXELS})('lit', 0, 48) > 200", timeout=30_000)
    assert page.evaluate(f"() => ({_PIXELS})('red', 160, 176)") == 0
    # the guest writes "NOVA" white on red at row 11 of its screen (tty0): it shows in the browser
    page.click(".xterm")
    page.keyboard.type("printf '\\033[11;1H\\033[1;37;41mNOVA\\033[0m' > /dev/tty0; echo VGA-$((40+2))\n")
    _wait_xterm(page, "^VGA-42", 30_000)
    page.wait_for_function(f"() => ({_PIXELS})('red', 160, 176) > 200", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "vm-vnc-desktop-light.png"), full_page=True)
    # a reader of the guest's keyboard, with Ctrl-Alt-Del made a plain key press (not a reboot)
    page.keyboard.type(
        "echo 0 > /proc/sys/kernel/ctrl-alt-del; for e in /sys/class/input/event*; do "
        "grep -qi keyboard $e/device/name && k=/dev/input/${e##*/}; done; "
        "(dd if=$k bs=24 count=1 >/dev/null 2>&1; echo KEYS-$((40+2))) & echo READER-$((40+2))\n"
    )
    _wait_xterm(page, "^READER-42", 30_000)
    page.click("[data-testid=vm-vnc] button:text-is('Ctrl-Alt-Del')")
    _wait_xterm(page, "KEYS-42", 30_000)
    page.click("[data-testid=vm-vnc] button:text-is('Full screen')")
    page.wait_for_function("() => document.fullscreenElement?.dataset.testid === 'vnc-screen'")
    page.evaluate("document.exitFullscreen()")
    page.wait_for_function("() => !document.fullscreenElement")


#: noVNC's canvas (its size is the guest's screen mode)
_CANVAS = "document.querySelector('[data-testid=vnc-screen] canvas') || {width: 0}"
#: how many pixels of noVNC's canvas (framebuffer coordinates) in rows [y0, y1) are lit (text) or
#: VGA red (a red background cell)
_PIXELS = """(kind, y0, y1) => {
  const c = document.querySelector('[data-testid=vnc-screen] canvas');
  if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, y0, c.width, y1 - y0).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
    if (kind === 'red' ? r > 140 && g < 60 && b < 60 : r + g + b > 300) n++;
  }
  return n;
}"""


def test_other_tenant_sees_only_its_own(cluster: Cluster, browser: Any, alpha_vm: dict[str, str]) -> None:
    alpha = Browser(browser, cluster.server.url, DESKTOP)
    beta = Browser(browser, cluster.server.url, PHONE)
    try:
        alpha.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        alpha.go("/vms")
        assert "alpha-secret" in alpha.main_text()

        beta.login(cluster.tenants["beta"][0], PASSWORD, tenant="beta")
        beta.go("/vms")
        assert "alpha-secret" not in beta.main_text()
        assert "No VMs yet." in beta.main_text()
        beta.go(f"/vms/{alpha_vm['id']}")
        assert beta.page.inner_text("main h1") == "Not found"
        assert "alpha-secret" not in beta.main_text()
        beta.go(f"/tasks/{alpha_vm['task_id']}")
        assert beta.page.inner_text("main h1") == "Not found"

        # live updates: while beta watches its overview, alpha's VM changes state; beta's live
        # stream is connected, yet nothing of alpha's reaches the page
        beta.go("/")
        beta.page.wait_for_selector(".live[data-state=live]")
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            r = api.post(f"/v1/vms/{alpha_vm['id']}/actions/reboot")
            assert r.status_code == 202, r.text
            assert wait_task(api, r.json()["task_id"], 120)["state"] == "succeeded"
        alpha.go("/")
        alpha.page.wait_for_selector("main .events li:has-text('task.succeeded')")
        time.sleep(1.0)  # several of beta's stream polls (every 250 ms) have passed
        text = beta.main_text()
        assert "alpha-secret" not in text and alpha_vm["id"] not in text and "task." not in text
        assert beta.errors == [] and alpha.errors == []
    finally:
        alpha.close()
        beta.close()


#: lit pixels (light on the terminal's black) of a PNG, counted by the page itself (no image library)
_LIT = """async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  [c.width, c.height] = [img.width, img.height];
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 300) n++;
  return n;
}"""


def _row_lit(page: Any, text: str) -> int:
    """How many pixels of the terminal row that reads exactly ``text`` are lit."""
    index = page.evaluate(
        "t => [...document.querySelectorAll('.xterm-rows > div')]"
        ".findIndex((r) => r.textContent.trim() === t)",
        text,
    )
    rows = page.eval_on_selector_all(".xterm-rows > div", "rs => rs.map((r) => r.textContent)")
    assert index >= 0, f"no terminal row reads {text!r}: {rows}"
    png = page.locator(".xterm-rows > div").nth(index).screenshot()
    return int(page.evaluate(_LIT, base64.b64encode(png).decode()))


def test_serial_console_own_page_underscores_full_screen_reconnect(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    """Issue 17 item 11: the console sits near the top of the VM page and has a page of its own;
    underscores are drawn (xterm's rows clipped DejaVu Sans Mono's "_" at a line height of 1:
    "x86 64"); full screen; Disconnect, then Reconnect, and the console answers again."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go(f"/vms/{alpha_vm['id']}")
        cards = page.eval_on_selector_all("main .card > h2", "hs => hs.map((x) => x.textContent)")
        assert cards.index("Serial console") < cards.index("Metrics"), cards
        page.click("main a:text-is('Open on its own page')")
        page.wait_for_url(f"**/#/vms/{alpha_vm['id']}/console")
        page.wait_for_selector("text=Connected", timeout=BOOT_S)  # opened at once on its own page
        page.click(".xterm")
        # the shell answers once the socket is attached: what is typed before may be lost
        for attempt in range(5):
            page.keyboard.type(f"echo ready-$((40+{attempt}))\n")
            try:
                _wait_xterm(page, f"^ready-{40 + attempt}$", 10_000)
                break
            except Exception:
                assert attempt < 4, "the console never answered"
        page.keyboard.type("echo ________________; uname -m\n")
        _wait_xterm(page, "^x86_64$", 60_000)
        # 16 underscores: a line of ink, not an empty row
        assert _row_lit(page, "_" * 16) > 50
        page.screenshot(path=str(ARTIFACTS / "vm-console-page-desktop-light.png"))

        page.click("button:text-is('Full screen')")
        page.wait_for_function("() => document.fullscreenElement?.dataset.testid === 'serial-console'")
        page.evaluate("document.exitFullscreen()")
        page.wait_for_function("() => !document.fullscreenElement")

        page.click("button:text-is('Disconnect')")
        page.wait_for_selector("text=Console disconnected: Reconnect opens it again.")
        assert page.is_hidden("button:text-is('Disconnect')")
        page.click("button:text-is('Reconnect')")
        page.wait_for_selector("text=Connected", timeout=30_000)
        page.click(".xterm")
        page.keyboard.type("echo back-$((40+2))\n")
        _wait_xterm(page, "^back-42$", 30_000)
        assert b.errors == []
    finally:
        b.close()


def test_backups_page_without_a_target_leads_to_one(cluster: Cluster, browser: Any) -> None:
    """Issue 17 item 7: with no backup target, the Backups page says so instead of a "Back up now"
    that can only fail; an administrator gets the link to the Backup targets page, a member is told
    an administrator makes one."""
    assert cluster.admin.get("/v1/backup-targets").json()["items"] == []
    b = Browser(browser, cluster.server.url, DESKTOP)
    try:
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go("/backups")
        note = b.page.inner_text("[data-testid=no-target]")
        assert note == "There is no backup target yet: an administrator creates one, then back VMs up to it."
        assert b.page.query_selector("#backup-vm") is None
        b.close()
        b = Browser(browser, cluster.server.url, DESKTOP)
        b.login("admin", cluster.server.admin_password)
        b.go("/backups")
        b.follow("[data-testid=no-target] a")
        assert b.page.inner_text("main h1") == "Backup targets"
        assert b.page.is_visible("form[aria-label='New backup target']")
        assert b.errors == []
    finally:
        b.close()


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on its own loop in a worker thread: Playwright's sync API (the module's
    browser fixture) keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _close_code(url: str) -> int:
    """The close code of a WebSocket the server refuses (accepts, then closes with a reason)."""

    async def run() -> int:
        async with websockets.connect(url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        return int(closed.value.rcvd.code)

    return _run_async(run)


def _listening_tcp_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    return inodes


def test_graphical_console_ticket_once_own_tenant_unix_socket_only(
    cluster: Cluster, alpha_vm: dict[str, str]
) -> None:
    vm_id = alpha_vm["id"]
    path = f"/v1/vms/{vm_id}/vnc"
    url = cluster.server.url.replace("http", "ws") + path
    with (
        cluster.server.client(_member_token(cluster, "alpha")) as alpha,
        cluster.server.client(_member_token(cluster, "beta")) as beta,
    ):
        ticket = alpha.post("/v1/tickets", json={"path": path}).json()["ticket"]
        beta_ticket = beta.post("/v1/tickets", json={"path": path}).json()["ticket"]

    async def screen() -> tuple[int, int, int]:
        async with websockets.connect(f"{url}?ticket={ticket}") as ws:

            async def recv() -> bytes:
                message = await ws.recv()
                return message if isinstance(message, bytes) else message.encode()

            rfb = RFBClient(recv, ws.send)
            async with asyncio.timeout(30):
                await rfb.handshake()
                await rfb.request(incremental=False)
                update = await rfb.next_update()
            lit = sum(1 for b in update.rects[0].pixels if b > 0x80)
            return rfb.width, rfb.height, lit

    # the owner's ticket opens the guest's screen (QEMU's VGA, RFB through the relay), once the guest
    # booted: its kernel's framebuffer mode (bochs-drm), not blank (the kernel's console text)
    with cluster.server.client(_member_token(cluster, "alpha")) as alpha:
        _guest_ready(alpha, vm_id)
    width, height, lit = _run_async(screen)
    assert width >= 1024 and height >= 700 and lit > 500
    # the same ticket again: refused (single use); another tenant's ticket: the VM is not found
    assert _close_code(f"{url}?ticket={ticket}") == 4401
    assert _close_code(f"{url}?ticket={beta_ticket}") == 4404
    # QEMU serves VNC on the VM's unix socket (mode 0600) and listens on no TCP port
    run_dir = cluster.server.state_dir / "run"
    key = hashlib.sha256(vm_id.encode()).hexdigest()[:16]
    pid = int((run_dir / f"{key}.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"-vnc") + 1] == f"unix:{run_dir / key}.vnc".encode()
    assert stat.S_IMODE((run_dir / f"{key}.vnc").stat().st_mode) == 0o600
    fds = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
    sockets = {f[len("socket:[") : -1] for f in fds if f.startswith("socket:[")}
    assert sockets and not sockets & _listening_tcp_inodes()


def _guest_ready(api: httpx.Client, vm_id: str) -> None:
    """Wait until the guest's latest boot reached its shell (a hot-unplug needs the guest's ACPI)."""
    deadline = time.monotonic() + BOOT_S / 1000
    while time.monotonic() < deadline:
        text = api.get(f"/v1/vms/{vm_id}/console-log").text
        if text.rfind("NOVACRON-GUEST-READY") > text.rfind("NOVACRON-GUEST-UP") >= 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"VM {vm_id} did not boot")


def test_volume_created_attached_and_detached_in_the_browser(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    """Volumes page: create (the API's refusal next to its field), attach to the running VM (a
    hot-plug), the VM page lists it, detach there; each step arrives over the event stream."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            _guest_ready(api, alpha_vm["id"])
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go("/volumes")
        page.fill("#vol-name", "web-vol")
        page.fill("#vol-size", "0")
        page.click("form[aria-label='New volume'] button[type=submit]")
        page.wait_for_selector("#vol-size[aria-invalid=true]")
        page.fill("#vol-size", "1")
        # this platform has no Ceph cluster: the rbd pool is refused next to its field
        page.select_option("#vol-pool", "rbd")
        page.click("form[aria-label='New volume'] button[type=submit]")
        page.wait_for_selector("#vol-pool[aria-invalid=true]")
        page.select_option("#vol-pool", "file")
        page.click("form[aria-label='New volume'] button[type=submit]")
        row = "tr[data-volume=web-vol]"
        page.wait_for_selector(f"{row} .badge[data-state=available]", timeout=30_000)
        page.click(f"{row} button:text-is('Attach')")
        page.select_option("dialog #attach-vm", alpha_vm["id"])
        page.click("dialog button.primary")
        page.wait_for_selector(f"{row} .badge[data-state=in-use]", timeout=60_000)
        assert "alpha-secret" in page.inner_text(row) and "file" in page.inner_text(row)

        b.go(f"/vms/{alpha_vm['id']}")
        vm_row = f"[data-testid=vm-volumes] {row}"
        page.wait_for_selector(f"{vm_row} .badge[data-state=in-use]")
        page.click(f"{vm_row} button:text-is('Detach')")
        page.click("dialog button.primary")
        page.wait_for_selector(f"{vm_row}", state="detached", timeout=90_000)
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            vol = api.get("/v1/volumes", params={"name": "web-vol"}).json()["items"][0]
            assert vol["status"] == "available" and vol["vm_id"] is None
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_every_page_phone_and_desktop_light_and_dark(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    routes = [
        "/",
        "/vms",
        "/vms/new",
        f"/vms/{alpha_vm['id']}",
        "/volumes",
        "/images",
        "/flavors",
        "/hosts",
        "/tasks",
        f"/tasks/{alpha_vm['task_id']}",
        "/tenants",
        "/projects",
        "/users",
        "/roles",
        "/audit",
    ]
    problems: list[str] = []
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        for scheme in ("light", "dark"):
            b = Browser(browser, cluster.server.url, viewport, scheme)
            try:
                b.page.goto(f"{cluster.server.url}/")
                b.page.wait_for_selector("#username")
                b.page.screenshot(path=str(ARTIFACTS / f"login-{size}-{scheme}.png"))
                problems += [f"login {size} {scheme}: {v}" for v in axe_violations(b.page, scheme == "dark")]
                b.login("admin", cluster.server.admin_password)
                for route in routes:
                    b.go(route)
                    if route.startswith("/vms/vm-"):
                        b.page.wait_for_function(
                            "() => /CPU \\d/.test(document.querySelector('.chart .value')?.textContent || '')"
                        )
                    name = route.strip("/").split("/")[0] or "overview"
                    if route.count("/") > 1:
                        name += "-detail" if route != "/vms/new" else "-new"
                    problems += page_problems(b, route, name, size, scheme)
                if size == "desktop" and scheme == "light":
                    b.go("/hosts")
                    b.page.click("text=Plan a rebalance (dry run)")
                    plan = b.page.wait_for_selector("[data-testid=rebalance-plan]")
                    assert "Imbalance" in plan.inner_text()
                    # maintenance on and off, each confirmed; the table follows the host's events
                    b.page.click("main button:text-is('Maintenance')")
                    b.page.click("dialog button.primary")
                    b.page.wait_for_selector("td .badge[data-state=maintenance]")
                    assert cluster.admin.get("/v1/hosts").json()["items"][0]["state"] == "maintenance"
                    b.page.click("main button:text-is('End maintenance')")
                    b.page.click("dialog button.primary")
                    b.page.wait_for_selector("td .badge[data-state=up]")
                    assert cluster.admin.get("/v1/hosts").json()["items"][0]["state"] == "up"
                assert b.errors == [], b.errors
            finally:
                b.close()
    assert problems == []


def test_vm_page_shows_the_limits_and_resizes_the_running_vm(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    """The VM page shows what the running VM can grow to; the resize dialog's size over that limit
    is refused by the API (named in the toast), one within it is hot-added (compute/live_resize.py)."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            _guest_ready(api, alpha_vm["id"])
            vm = api.get(f"/v1/vms/{alpha_vm['id']}").json()
        assert vm["max_vcpus"] > vm["vcpus"], vm  # the tiny flavor's 1 vCPU, up to the host's CPUs
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go(f"/vms/{alpha_vm['id']}")
        limits = page.wait_for_selector("[data-testid=vm-limits]")
        assert f"up to {vm['max_vcpus']} vCPU" in limits.inner_text()
        page.click("button:text-is('Resize')")
        page.fill("dialog #resize-vcpus", str(vm["max_vcpus"] + 1))
        page.click("dialog button.primary")
        page.wait_for_selector(f".toast.bad:has-text('at most {vm['max_vcpus']} vCPUs')")
        page.click("button:text-is('Resize')")
        page.fill("dialog #resize-vcpus", str(vm["vcpus"] + 1))
        page.click("dialog button.primary")
        page.wait_for_selector(f"[data-testid=vm-details]:has-text('{vm['vcpus'] + 1} vCPU')", timeout=60_000)
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            deadline = time.monotonic() + 60
            while (now := api.get(f"/v1/vms/{alpha_vm['id']}").json())["task_state"] is not None:
                assert time.monotonic() < deadline, now
                time.sleep(0.3)
            assert (now["vcpus"], now["state"], now["error"]) == (vm["vcpus"] + 1, "running", None)
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_vm_snapshot_tree_take_revert_delete_in_the_browser(
    cluster: Cluster, browser: Any, alpha_vm: dict[str, str]
) -> None:
    """A VM's page: take a snapshot (the API's refusal next to its field), a second one with the
    guest's RAM under it, revert to the first (the current marker moves), delete the first while
    the VM runs (the second moves up); each step arrives over the event stream. Last in the module:
    the disk-only revert restarts alpha's guest."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    tree = "[data-testid=vm-snapshots] [data-testid=snapshot-tree]"
    try:
        b.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        b.go(f"/vms/{alpha_vm['id']}")
        page.fill("#snap-name", "Bad Name")
        page.click("form[aria-label='New snapshot'] button[type=submit]")
        page.wait_for_selector("#snap-name[aria-invalid=true]")
        page.fill("#snap-name", "web-s1")
        page.click("form[aria-label='New snapshot'] button[type=submit]")
        s1 = f"{tree} > li[data-snapshot=web-s1]"
        page.wait_for_selector(f"{s1} .badge[data-state=available]", timeout=60_000)
        page.fill("#snap-name", "web-s2")
        page.check("#snap-memory")
        page.click("form[aria-label='New snapshot'] button[type=submit]")
        s2 = f"{s1} > ul > li[data-snapshot=web-s2]"  # a child of web-s1
        page.wait_for_selector(f"{s2} [data-testid=snapshot-current]", timeout=120_000)
        assert "disk + RAM" in page.inner_text(s2)

        page.click("button[aria-label='Revert to web-s1']")
        page.click("dialog button.danger")
        page.wait_for_selector(f"{s1} > div [data-testid=snapshot-current]", timeout=120_000)
        page.wait_for_selector("button[aria-label='Delete snapshot web-s1']:not([disabled])", timeout=60_000)
        page.click("button[aria-label='Delete snapshot web-s1']")
        page.click("dialog button.danger")
        page.wait_for_selector(f"{tree} > li[data-snapshot=web-s2]", timeout=60_000)
        with cluster.server.client(_member_token(cluster, "alpha")) as api:
            snaps = api.get(f"/v1/vms/{alpha_vm['id']}/snapshots").json()["items"]
            assert [(s["name"], s["parent_id"]) for s in snaps] == [("web-s2", None)]
        assert b.errors == [], b.errors
    finally:
        b.close()
