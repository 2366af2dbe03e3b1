"""Load balancer VIP failover: how long a client of an ACTIVE_STANDBY load balancer goes without
an answer when the active amphora is lost, and when only its HAProxy dies.

Namespaces from tests/integration/lbhalab.py (two amphorae "hosts" A and B, each running the
seam's HAProxy and keepalived, two members, a client). For each failover a client loops on the
VIP with a 0.25 s per-request timeout and times every request; the active side is then lost
(every process of its namespace SIGKILLed and its link taken down: no goodbye advert) or only its
HAProxy is SIGKILLed (the check script moves the VIP). Reported per kind, over ``--failovers``
runs: the client's gap (the loss → the end of the first request started after it that succeeds,
through the standby) and the moment the standby reported MASTER with the VIP on its interface.
After each failover the lost side comes back (nopreempt: as the standby) and the next failover
takes down the other side.
Run as root: ``.venv/bin/python bench/bench_lb_failover.py [--failovers 10] [--advert-int 0.5]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import load, machine  # noqa: E402

from tests.integration.lbhalab import PORT, HaLab, first_success_after, ha_lab  # noqa: E402

CLIENT_TIMEOUT_S = 0.25


def failover(lab: HaLab, active: str, kind: str) -> tuple[float, float]:
    """Take ``active`` down (``host`` or ``haproxy``), bring it back as the standby: (client gap,
    time until the other side holds the VIP as MASTER), in seconds."""
    standby = next(a for a in lab.sides if a != active)
    looper = lab.net.loop(PORT, timeout=CLIENT_TIMEOUT_S)
    time.sleep(0.5)  # the client is under way
    if kind == "host":
        lab.lose_host(active)
    else:
        lab.kill(active, command="haproxy")
    down_at = time.time()
    lab.wait_holder(standby, lost=active if kind == "host" else None)
    moved = time.time() - down_at
    time.sleep(0.5)  # a few requests through the standby
    gap = first_success_after(looper.finish(), down_at)
    if kind == "host":
        lab.restore_host(active)
    else:
        lab.side(active).apply(lab.spec)
    lab.wait_state(active, "BACKUP")
    return gap, moved


def report(kind: str, gaps: list[float], moves: list[float]) -> None:
    client = f"client gap p50 {statistics.median(gaps):.2f} s max {max(gaps):.2f} s"
    master = f"standby MASTER p50 {statistics.median(moves):.2f} s max {max(moves):.2f} s"
    print(f"{kind + ' lost':<13} {client}  |  {master}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failovers", type=int, default=10, help="failovers of each kind")
    parser.add_argument("--advert-int", type=float, default=None, help="VRRP advert interval, s")
    args = parser.parse_args()
    for tool in ("haproxy", "keepalived", "socat"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool} (scripts/setup.sh installs it)")
    workdir = Path(
        subprocess.run(["mktemp", "-d", "/tmp/nclbf.XXXX"], capture_output=True, text=True).stdout.strip()
    )
    try:
        with ha_lab(workdir, advert_int=args.advert_int) as lab:
            lab.wait_holder("amp-a")
            print(f"# {machine()}; {load()}; advert_int {lab.spec.vrrp_advert_int:g} s, ", end="")
            print(f"client timeout {CLIENT_TIMEOUT_S} s, {args.failovers} failovers of each kind")
            active = "amp-a"
            for kind in ("host", "haproxy"):
                gaps, moves = [], []
                for _ in range(args.failovers):
                    gap, moved = failover(lab, active, kind)
                    gaps.append(gap)
                    moves.append(moved)
                    active = next(a for a in lab.sides if a != active)
                report(kind, gaps, moves)
            print(f"# after: {load()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
