"""A legitimate client's latency through the platform's load balancer while a SYN flood hits it:
quiet, under a flood of 20,000 SYNs/s and under one as fast as a Python process sends, with the
listener's synproxy (``ListenerProtection.syn_flood``) and without it (the kernel's own SYN
cookies then answer once HAProxy's queue of half-open connections is full).

Namespaces from tests/integration/lblab.py: the client, the load balancer (the seam's HAProxy), two
members and an attacker that drops the synproxy's answers (as a spoofed source never answers).
The client makes a request every 20 ms on a new connection (lbattack.PACED_CLIENT), for RUN_S s a
run; the flood (lbattack.SYN_FLOOD) runs alongside. Each configuration runs ROUNDS times, the
configurations taking turns; printed: each run's p50/p99, success and what the synproxy
answered, then the medians. Run as root: ``.venv/bin/python bench/bench_lb_synflood.py``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import load, machine  # noqa: E402

from novacron.lbaas import synproxy  # noqa: E402
from novacron.lbaas.haproxy import HAProxyInstance  # noqa: E402
from novacron.lbaas.model import ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec  # noqa: E402
from novacron.lbaas.protection import ListenerProtection  # noqa: E402
from tests.integration.lbattack import PACED_CLIENT, SYN_FLOOD, p99, start  # noqa: E402
from tests.integration.lblab import LbLab, sh  # noqa: E402

RUN_S = 10.0
PACE_S = 0.02
ROUNDS = 3
#: SYNs a second (0: as fast as the process sends)
FLOODS = {"quiet": None, "flood 20k/s": 20_000, "flood max": 0}


def spec(lab: LbLab, syn_flood: bool) -> LoadBalancerSpec:
    members = tuple(MemberSpec(n, address, 80) for n, address in lab.addresses.items())
    listener = ListenerSpec(
        "web", "HTTP", 80, default_pool_id="pool", protection=ListenerProtection(syn_flood=syn_flood)
    )
    return LoadBalancerSpec(
        "lb-1", lab.vip, listeners=(listener,), pools=(PoolSpec("pool", members=members),)
    )


def run(lab: LbLab, attacker: str, rate: int | None) -> tuple[float, float, float, int, int]:
    """One run: the client's p50 and p99 (ms), its success, the SYNs sent and the cookies sent."""
    before = synproxy.counters(lab.lb).syn_received
    client = start(lab.client, PACED_CLIENT, lab.vip, 80, PACE_S, RUN_S)
    flood = None if rate is None else start(attacker, SYN_FLOOD, lab.vip, 80, 10**8, RUN_S, rate)
    sent = 0 if flood is None else int(flood.result()["sent"])
    result = client.result()
    latencies = sorted(seconds for _, seconds in result["ok"])
    success = len(result["ok"]) / (len(result["ok"]) + len(result["failed"]))
    cookies = synproxy.counters(lab.lb).syn_received - before
    return statistics.median(latencies) * 1000, p99(latencies) * 1000, success, sent, cookies


def main() -> None:
    if not shutil.which("haproxy"):
        raise SystemExit("needs haproxy (scripts/setup.sh installs it)")
    workdir = Path(
        subprocess.run(["mktemp", "-d", "/tmp/nclbs.XXXX"], capture_output=True, text=True).stdout.strip()
    )
    lab = LbLab(workdir)
    instance = HAProxyInstance(workdir / "lb", netns=lab.lb)
    try:
        lab.up(members=2)
        attacker, _ = lab.add_host("atk", 20)
        sh(f"ip netns exec {attacker} nft add table ip atk")
        sh(f"ip netns exec {attacker} nft 'add chain ip atk in {{ type filter hook input priority 0; }}'")
        sh(f"ip netns exec {attacker} nft add rule ip atk in tcp flags syn,ack / syn,ack drop")
        print(f"# {machine()}; {load()}; {RUN_S:.0f} s per run, a request every {PACE_S * 1000:.0f} ms")
        figures: dict[str, list[tuple[float, float, float, int, int]]] = {}
        for round_ in range(ROUNDS):
            for syn_flood in (True, False):
                instance.apply(spec(lab, syn_flood))
                for name, rate in FLOODS.items():
                    label = f"{'synproxy' if syn_flood else 'no synproxy':11} {name}"
                    p50, p99_ms, success, sent, cookies = run(lab, attacker, rate)
                    figures.setdefault(label, []).append((p50, p99_ms, success, sent, cookies))
                    print(
                        f"round {round_ + 1}  {label:24} p50 {p50:6.2f} ms  p99 {p99_ms:7.2f} ms  "
                        f"success {success:.4f}  SYNs {sent / RUN_S:7.0f}/s  cookies {cookies}",
                        flush=True,
                    )
        print(f"# medians of {ROUNDS} rounds")
        for label, runs in figures.items():
            p50, p99_ms, success = (statistics.median(r[i] for r in runs) for i in range(3))
            syn_rate = statistics.median(r[3] for r in runs) / RUN_S
            medians = f"p50 {p50:6.2f} ms  p99 {p99_ms:7.2f} ms  success {success:.4f}"
            print(f"{label:24} {medians}  {syn_rate:6.0f} SYN/s")
        print(f"# after: {load()}")
    finally:
        instance.stop()
        lab.down()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
