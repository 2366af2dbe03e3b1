"""Global load balancing on PowerDNS: how fast LUA-record answers come, and how long clients of a
site whose listener died keep getting it.

Our own pdns_server (tests/integration/gslblab.py) serves one name with four TCP sites on
loopback addresses in two regions. Answers: ``--queries`` queries in one ``dig -f`` batch (one
client, one query at a time: a latency figure, not the server's capacity), with and without an EDNS
client subnet. Failover: the nearest site's listener is closed and the name is asked every 50 ms
until the answer is another site; ``--failovers`` runs, the listener reopened (and seen again)
between runs. The health-check interval is ``--interval`` seconds.
Run: ``.venv/bin/python bench/bench_gslb.py [--queries 2000] [--failovers 5] [--interval 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import load, machine  # noqa: E402

from novacron.gslb.model import GlobalName, RegionRule, Site, ZoneSpec  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.integration import gslblab  # noqa: E402
from tests.integration.gslblab import TcpSite, dig, wait_for  # noqa: E402

NAME = "app.gslb.example."
REGIONS = (RegionRule("10.0.0.0/8", "eu"), RegionRule("20.0.0.0/8", "us"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--interval", type=int, default=1)
    args = parser.parse_args()
    gslblab.HEALTH_INTERVAL_S = args.interval
    port = free_port()
    sites = [TcpSite(f"127.0.0.{70 + n}", port).up() for n in range(4)]
    regions = ("eu", "eu", "us", "us")
    spec = tuple(Site(s.address, port, r, 1 + n) for n, (s, r) in enumerate(zip(sites, regions, strict=True)))
    with gslblab.pdns() as server:
        server.publish(ZoneSpec("gslb.example.", (GlobalName(NAME, 30, spec),), REGIONS, 1))
        server.start()
        dig(server, NAME)
        wait_for(lambda: len(set(dig(server, NAME, subnet="10.0.0.0/24", count=20))) == 2, 10 * args.interval)
        print(f"# {machine()}; {load()}; check interval {args.interval} s")
        for label, subnet in (("no ECS", None), ("ECS /24", "10.0.0.0/24")):
            started = time.perf_counter()
            answers = dig(server, NAME, subnet=subnet, count=args.queries)
            took = time.perf_counter() - started
            assert len(answers) == args.queries
            print(f"{label:<8} {args.queries} queries in {took:.2f} s: {args.queries / took:,.0f} answers/s")
        eu = [s.address for s in sites[:2]]
        gaps = []
        for _ in range(args.failovers):
            sites[0].down()
            sites[1].down()  # the whole eu region
            started = time.monotonic()
            while set(dig(server, NAME, subnet="10.0.0.0/24")) & set(eu):
                time.sleep(0.05)
            gaps.append(time.monotonic() - started)
            sites[0].up()
            sites[1].up()
            wait_for(
                lambda: set(dig(server, NAME, subnet="10.0.0.0/24", count=10)) <= set(eu), 10 * args.interval
            )
        print(
            f"failover (eu region's listeners closed → us answered): median {statistics.median(gaps):.2f} s,"
            f" max {max(gaps):.2f} s over {len(gaps)}"
        )
        print(f"# after: {load()}")
    for site in sites:
        site.down()


if __name__ == "__main__":
    main()
