"""Other users' requests during an anonymous wrong-password flood (issue 11, finding 5).

A real ``novacron-server`` (SQLite, no embedded agent) on loopback. ``--connections`` threads
(default 16), each with its own keep-alive connection, post wrong passwords for ``admin`` to
``POST /v1/tokens`` as fast as they are answered, for ``--seconds`` (default 10). Meanwhile one
other, logged-in client alternates ``GET /v1/projects/{id}`` and ``PATCH /v1/projects/{id}``
every 50 ms; their latencies are printed (median, p99, max) with the attackers' answers.

Configurations, each on a fresh server:
  protected    the defaults, but the throttle's failure limits raised out of reach: a
               distributed attacker (many addresses, many usernames) whom only the bounded
               hashing pool (NOVACRON_LOGIN_HASH_WORKERS threads, queue of 32) holds back
  throttled    the defaults: the flood comes from one address, so after 20 failures it is
               answered 429 without hashing
  unbounded    NOVACRON_LOGIN_HASH_WORKERS=0: hashing on the shared thread pool, no queue limit,
               limits out of reach (the new code with the pool turned off)
  before       with ``--before-src DIR``: the server imported from another checkout's ``src``
               (e.g. the commit before this change), the probe's configuration

Run: .venv/bin/python bench/bench_login_flood.py [--connections 16] [--seconds 10] [--before-src DIR]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import threading
import time

import httpx
from common import load, machine, pct, running_server

UNREACHABLE = {"NOVACRON_LOGIN_ACCOUNT_FAILURES": "1000000", "NOVACRON_LOGIN_SOURCE_FAILURES": "1000000"}
CONFIGS: dict[str, dict[str, str]] = {
    "protected": dict(UNREACHABLE),
    "throttled": {},
    "unbounded": {**UNREACHABLE, "NOVACRON_LOGIN_HASH_WORKERS": "0"},
}


def flood(url: str, token: str, connections: int, seconds: float) -> dict[str, list[float]]:
    stop = threading.Event()
    answers: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def attacker() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while not stop.is_set():
                try:
                    status = c.post(
                        "/v1/tokens", json={"username": "admin", "password": "wrong-guess-1"}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    answers[status] += 1

    samples: dict[str, list[float]] = {"GET": [], "PATCH": []}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as user:
        project = user.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(connections)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        t_start = time.monotonic()
        while time.monotonic() - t_start < seconds:
            t0 = time.perf_counter()
            assert user.get(f"/v1/projects/{project}").status_code == 200
            samples["GET"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert user.patch(f"/v1/projects/{project}", json={"description": str(t0)}).status_code == 200
            samples["PATCH"].append(time.perf_counter() - t0)
            time.sleep(0.05)
        stop.set()
        elapsed = time.monotonic() - t_start + 1.0
        for t in threads:
            t.join(120)
    total = sum(answers.values())
    print(f"  attackers: {total} answers in {elapsed:.1f} s ({total / elapsed:.1f}/s): {dict(answers)}")
    return samples


def baseline(url: str, token: str, n: int = 100) -> dict[str, list[float]]:
    """The same GET/PATCH pair with no flood."""
    samples: dict[str, list[float]] = {"GET": [], "PATCH": []}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as user:
        project = user.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
        for _ in range(n):
            t0 = time.perf_counter()
            user.get(f"/v1/projects/{project}")
            samples["GET"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            user.patch(f"/v1/projects/{project}", json={"description": str(t0)})
            samples["PATCH"].append(time.perf_counter() - t0)
    return samples


def report(name: str, samples: dict[str, list[float]]) -> None:
    for verb, xs in samples.items():
        print(
            f"  {name:<10} {verb:<5} median {statistics.median(xs) * 1000:8.1f} ms  "
            f"p99 {pct(xs, 0.99) * 1000:8.1f} ms  max {max(xs) * 1000:8.1f} ms  n={len(xs)}"
        )


def run(name: str, env: dict[str, str], args: argparse.Namespace) -> None:
    env = {"NOVACRON_EMBEDDED_AGENT": "0", "NOVACRON_AGENT_PORT": "0", **env}
    with running_server(**env) as srv:
        token = srv.token()
        print(f"{name}: {load()}")
        report("no flood", baseline(srv.url, token))
        report(name, flood(srv.url, token, args.connections, args.seconds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--before-src", help="another checkout's src/ to run as 'before'")
    parser.add_argument("--only", help="comma-separated configurations to run")
    args = parser.parse_args()
    print(f"bench_login_flood: {machine()}; {args.connections} connections, {args.seconds:.0f} s")
    configs = dict(CONFIGS)
    if args.before_src:
        configs["before"] = {"PYTHONPATH": os.path.abspath(args.before_src)}
    for name, env in configs.items():
        if args.only and name not in args.only.split(","):
            continue
        run(name, env, args)


if __name__ == "__main__":
    main()
