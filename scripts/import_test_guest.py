"""Import the test guest (guest/out) into a running NovaCron as the public image ``novacron-test-guest``.

Used by scripts/up.sh on a node's first start. It talks only to the REST API: log in as admin with
the first-start password from <state>/admin-password, create the image with the guest's kernel
command line, then upload the disk, kernel and initrd. Idempotent: an image of that name that is
already active with its kernel and initrd is left alone; an incomplete one is replaced.

    .venv/bin/python scripts/import_test_guest.py --url https://127.0.0.1:8080 --state-dir /var/lib/novacron

HTTPS is verified against the node's platform CA (<state>/pki/ca.crt, or --ca-file), never skipped.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
NAME = "novacron-test-guest"


def log(msg: str) -> None:
    print(f"[up] {msg}", file=sys.stderr, flush=True)


def trust(url: str, ca_file: Path) -> ssl.SSLContext | bool:
    """How to verify the node: its platform CA for HTTPS (made on the server's first start)."""
    if not url.startswith("https://"):
        return True
    return ssl.create_default_context(cafile=str(ca_file))


def wait_healthy(url: str, ca_file: Path, timeout_s: float, server_pid: int | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server_pid is not None and not Path(f"/proc/{server_pid}").exists():
            raise SystemExit("the server exited before it answered; see its output above")
        if url.startswith("https://") and not ca_file.exists():
            time.sleep(0.3)  # the server has not made its CA yet
            continue
        try:
            if httpx.get(f"{url}/healthz", timeout=2, verify=trust(url, ca_file)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url}/healthz did not answer within {timeout_s:.0f}s")


def chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(size):
            yield block


def check(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        raise SystemExit(f"{r.request.method} {r.request.url.path} -> HTTP {r.status_code}: {r.text[:500]}")
    return r.json() if r.content else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--guest-dir", type=Path, default=ROOT / "guest" / "out")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--server-pid", type=int, help="give up early if this process exits")
    ap.add_argument("--ca-file", type=Path, help="the node's CA (default <state>/pki/ca.crt)")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args()

    ca_file = args.ca_file or args.state_dir / "pki" / "ca.crt"
    wait_healthy(args.url, ca_file, args.timeout, args.server_pid)
    verify = trust(args.url, ca_file)
    pw_file = args.state_dir / "admin-password"
    if not pw_file.exists():
        raise SystemExit(f"{pw_file} not found: cannot log in as admin to import the test guest")
    password = pw_file.read_text().strip()
    r = httpx.post(
        f"{args.url}/v1/tokens", json={"username": "admin", "password": password}, timeout=30, verify=verify
    )
    if r.status_code in (400, 401, 403):
        raise SystemExit(f"admin login with {pw_file} failed (password changed?); import the guest by hand")
    token = check(r)["access_token"]
    g = args.guest_dir
    parts = {"file": g / "disk.qcow2", "kernel": g / "vmlinux", "initrd": g / "initrd.img"}
    for p in [*parts.values(), g / "cmdline"]:
        if not p.is_file():
            raise SystemExit(f"{p} missing: build the guest with python3 guest/build.py")

    with httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(60.0, read=600.0), verify=verify) as c:
        for img in check(c.get("/v1/images", params={"name": args.name}))["items"]:
            if img["status"] == "active" and img["has_kernel"] and img["has_initrd"]:
                log(f"image {args.name} already present ({img['id']})")
                return 0
            log(f"replacing incomplete image {args.name} ({img['id']}, status {img['status']})")
            check(c.delete(f"/v1/images/{img['id']}"))
        # the admin has no tenant of its own: the image goes into the bootstrap project 'default'
        projects = check(c.get("/v1/projects", params={"name": "default"}))["items"]
        if len(projects) != 1:
            raise SystemExit(f"expected one project named 'default', found {len(projects)}")
        img = check(c.post("/v1/images", json={
            "name": args.name, "public": True, "project_id": projects[0]["id"],
            "kernel_cmdline": (g / "cmdline").read_text().strip(),
        }))
        # kernel and initrd first: the image is usable once its disk is active
        for part in ("kernel", "initrd", "file"):
            path = parts[part]
            img = check(c.put(f"/v1/images/{img['id']}/{part}", content=chunks(path), headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(path.stat().st_size),
            }))
        if img["status"] != "active":
            raise SystemExit(f"image {args.name} ended in status {img['status']}: {img.get('error')}")
        log(f"imported public image {args.name} ({img['id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
