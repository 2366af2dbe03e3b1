"""Traffic for the abuse-protection tests: a paced legitimate client, a request flood, slowloris
connections and a SYN flood, each one Python process in a namespace of tests/integration/lblab.py
that stops by itself after a bounded time and prints what it saw as JSON (wall-clock seconds, comparable with
the test's ``time.time()``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import IO, Any

#: one request every ``interval`` s for ``duration`` s, on a new connection each:
#: {"ok": [[start, seconds]...], "failed": [[start, error]...]}
PACED_CLIENT = """
import http.client, json, sys, time
host, port, interval, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ok, failed = [], []
end = time.time() + duration
next_at = time.time()
while next_at < end:
    time.sleep(max(0.0, next_at - time.time()))
    next_at += interval
    start = time.time()
    try:
        c = http.client.HTTPConnection(host, port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse(); r.read(); c.close()
        if r.status == 200:
            ok.append([start, time.time() - start])
        else:
            failed.append([start, str(r.status)])
    except Exception as e:
        failed.append([start, type(e).__name__])
print(json.dumps({"ok": ok, "failed": failed}))
"""

#: requests as fast as one process can for ``duration`` s, a connection each:
#: {"answers": [[time, status or 0 when refused without an answer]...]}
FLOOD = """
import json, socket, sys, time
host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
answers = []
end = time.time() + duration
while time.time() < end:
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"GET / HTTP/1.0\\r\\nHost: lb\\r\\n\\r\\n")
        head = s.recv(12)
        s.close()
        status = int(head[9:12]) if head.startswith(b"HTTP/") else 0
    except OSError:
        status = 0
    answers.append([time.time(), status])
print(json.dumps({"answers": answers}))
"""

#: keeps ``count`` connections sending a header line every 0.5 s and never ending the request,
#: reopening those that close, for ``duration`` s: {"closed": [[opened, closed, status]...]}
#: (status 0: closed without an answer, i.e. refused at connection time)
SLOWLORIS = """
import json, select, socket, sys, time
host, port, count, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
closed, open_ = [], {}
def opened():
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: lb\\r\\n")
        s.setblocking(False)
        open_[s] = time.time()
    except OSError:
        closed.append([time.time(), time.time(), 0])
end = time.time() + duration
while time.time() < end:
    while len(open_) < count and time.time() < end:
        opened()
    time.sleep(0.5)
    readable, _, _ = select.select(list(open_), [], [], 0)
    for s in readable:
        try:
            head = s.recv(12)
        except OSError:
            head = b""
        closed.append([open_.pop(s), time.time(), int(head[9:12]) if head.startswith(b"HTTP/") else 0])
        s.close()
    for s in list(open_):
        try:
            s.sendall(b"X-Slow: 1\\r\\n")
        except OSError:
            closed.append([open_.pop(s), time.time(), 0])
for s in open_:
    s.close()
print(json.dumps({"closed": closed}))
"""


#: bare SYNs from raw sockets to host:port, ``rate`` a second (0: as fast as the process can), at most
#: ``count`` in at most ``duration`` s, from the
#: namespace's own address and random source ports, each never followed by an ACK (the test drops
#: the answers in the attacker's namespace, so its kernel sends no RST): {"sent": n, "seconds": s}
SYN_FLOOD = """
import json, random, socket, struct, sys, time
host, port, count, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rate = float(sys.argv[5])
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); probe.connect((host, port))
src = probe.getsockname()[0]; probe.close()
def checksum(data):
    if len(data) % 2:
        data += b"\\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
def syn(sport, seq):
    addresses = socket.inet_aton(src) + socket.inet_aton(host)
    header = struct.pack("!HHIIBBHHH", sport, port, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = addresses + struct.pack("!BBH", 0, 6, 20)
    tcp = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 40, 0, 0, 64, 6, 0) + addresses
    return ip + tcp
packets = [syn(random.randint(1024, 65535), random.getrandbits(32)) for _ in range(4096)]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sent, start = 0, time.time()
while sent < count and time.time() - start < duration:
    for packet in packets[:256]:
        sock.sendto(packet, (host, 0))
    sent += 256
    packets = packets[256:] + packets[:256]
    if rate:
        time.sleep(max(0.0, start + sent / rate - time.time()))
print(json.dumps({"sent": sent, "seconds": time.time() - start}))
"""


@dataclass
class Traffic:
    """One bounded traffic process; ``result`` waits for its end. Its output goes to a file, not
    a pipe: a flood's answers outgrow a pipe's buffer long before anyone reads them."""

    proc: subprocess.Popen[bytes]
    out: IO[bytes]

    def result(self, timeout: float = 120) -> dict[str, Any]:
        self.proc.wait(timeout=timeout)
        self.out.seek(0)
        text = self.out.read().decode()
        assert self.proc.returncode == 0, text
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.out.close()


def start(netns: str, script: str, *args: object) -> Traffic:
    """``script`` with ``args`` in network namespace ``netns``."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", script, *map(str, args)]
    out = tempfile.TemporaryFile()  # noqa: SIM115 (Traffic closes it)
    return Traffic(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT), out)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
