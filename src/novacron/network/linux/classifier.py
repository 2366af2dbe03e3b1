"""User-space TLS classifier on NFQUEUE: reads the SNI of a ClientHello, gives the verdict.

nftables can match fixed offsets only; the server name sits behind variable-length fields, so the
ClientHello of a flow under a ``tls`` rule with ``sni_allow`` is queued here (``nft_queue`` is not
built in this kernel: the queueing rule is an iptables ``NFQUEUE`` target, which is). The verdict
comes back as a packet mark that the firewall's ``verdicts`` chain copies into the flow's conntrack
mark, so only the ClientHello of each flow ever reaches user space; the rest of the flow stays in
the kernel. The nfnetlink_queue protocol is spoken directly over a netlink socket (no C binding).
Run as ``python -m novacron.network.linux.classifier --queue N --config FILE`` inside the host's
namespace; ``ensure``/``stop`` manage it. Fails closed: without a listener, queued packets drop.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from novacron.network.linux import nft

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT, MSG_CONFIG = 0, 1, 2
CFG_CMD, CFG_PARAMS, CFG_MASK, CFG_FLAGS = 1, 2, 4, 5
#: hand GSO super-packets over whole instead of segmenting them in the kernel first
F_GSO = 1 << 2
CMD_BIND = 1
COPY_PACKET = 2
COPY_RANGE = 4096
A_PACKET_HDR, A_VERDICT_HDR, A_MARK, A_PAYLOAD = 1, 2, 3, 10
NF_DROP, NF_ACCEPT = 0, 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
CLS_ALLOW_BIT, CLS_DENY_BIT = 1 << 29, 1 << 30


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _msg(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, family: int = 0) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, 0, 0) + body


def _attrs(buf: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def sni_of(packet: bytes) -> str | None:
    """The server name of a TLS ClientHello in an IPv4/IPv6 TCP packet (first segment), else None."""
    try:
        if packet[0] >> 4 == 4:
            ihl, proto = (packet[0] & 0xF) * 4, packet[9]
        else:
            ihl, proto = 40, packet[6]
        if proto != 6:
            return None
        p = packet[ihl + ((packet[ihl + 12] >> 4) * 4) :]
        if p[0] != 0x16 or p[5] != 0x01:
            return None
        o = 9 + 2 + 32  # record header, handshake header, version, random
        o += 1 + p[o]  # session id
        o += 2 + int.from_bytes(p[o : o + 2], "big")  # cipher suites
        o += 1 + p[o]  # compression methods
        end = o + 2 + int.from_bytes(p[o : o + 2], "big")
        o += 2
        while o + 4 <= min(end, len(p)):
            kind, length = int.from_bytes(p[o : o + 2], "big"), int.from_bytes(p[o + 2 : o + 4], "big")
            if kind == 0:  # server_name: list length, name type (0 = host_name), name length, name
                n = int.from_bytes(p[o + 7 : o + 9], "big")
                return p[o + 9 : o + 9 + n].decode("ascii").lower()
            o += 4 + length
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def allowed(name: str | None, patterns: list[str]) -> bool:
    if not name:
        return False
    return any(fnmatch.fnmatchcase(name, pat.lower()) for pat in patterns)


class Classifier:
    def __init__(self, queue: int, config: Path) -> None:
        self.queue, self.config = queue, config
        self.sni: dict[int, list[str]] = {}
        self.mtime = 0.0
        self.checked = 0.0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self._config(_attr(CFG_CMD, struct.pack("=BBH", CMD_BIND, 0, 0)))
        # the ClientHello's server name sits in the first ~600 bytes: copy no more than this
        self._config(_attr(CFG_PARAMS, struct.pack("!IB", COPY_RANGE, COPY_PACKET)))
        self._config(_attr(CFG_MASK, struct.pack("!I", F_GSO)) + _attr(CFG_FLAGS, struct.pack("!I", F_GSO)))

    def _config(self, attrs: bytes) -> None:
        self.sock.send(_msg(MSG_CONFIG, self.queue, attrs, NLM_F_REQUEST | NLM_F_ACK))
        reply = self.sock.recv(65536)
        length, kind = struct.unpack_from("=IH", reply)
        if kind == 2 and struct.unpack_from("=i", reply, 16)[0] != 0:  # NLMSG_ERROR
            raise OSError(-struct.unpack_from("=i", reply, 16)[0], "nfqueue config refused")

    def _reload(self) -> None:
        now = time.monotonic()
        if now - self.checked < 0.5:
            return
        self.checked = now
        with contextlib.suppress(OSError, ValueError):
            m = self.config.stat().st_mtime
            if m != self.mtime:
                self.sni = {int(k): v for k, v in json.loads(self.config.read_text()).items()}
                self.mtime = m

    def verdict(self, attrs: dict[int, bytes]) -> tuple[int, int]:
        """(packet id, new packet mark)."""
        pid = struct.unpack_from("!I", attrs[A_PACKET_HDR])[0]
        mark = struct.unpack("!I", attrs[A_MARK])[0] if A_MARK in attrs else 0
        # the firewall copied the flow's tls rule id into bits 16-27 (no conntrack glue in this kernel)
        rule = (mark >> 16) & 0xFFF
        ok = allowed(sni_of(attrs.get(A_PAYLOAD, b"")), self.sni.get(rule, []))
        return pid, mark | (CLS_ALLOW_BIT if ok else CLS_DENY_BIT)

    def serve(self) -> None:
        while True:
            data = self.sock.recv(1 << 17)
            self._reload()
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == (NFNL_SUBSYS_QUEUE << 8) | MSG_PACKET:
                    pid, mark = self.verdict(_attrs(data[off + 20 : off + length]))
                    attrs = _attr(A_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))
                    self.sock.send(
                        _msg(MSG_VERDICT, self.queue, attrs + _attr(A_MARK, struct.pack("!I", mark)))
                    )
                off += (length + 3) & ~3 if length else len(data)


# ---- lifecycle, called by Firewall.apply/clear ---------------------------------------------------------
def _rule(queue: int) -> list[str]:
    return [
        "FORWARD",
        "-m",
        "mark",
        "--mark",
        "0x10000000/0x10000000",
        "-j",
        "NFQUEUE",
        "--queue-num",
        str(queue),
    ]


def _pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / "classifier.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def ensure(netns: str | None, state_dir: Path, queue: int, sni: dict[int, list[str]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    cfg = state_dir / "sni.json"
    tmp = cfg.with_suffix(".tmp")
    tmp.write_text(json.dumps(sni))
    tmp.replace(cfg)
    for tool in ("iptables", "ip6tables"):
        if not _has(netns, tool, queue):
            nft.run(netns, [tool, "-w", "-A", *_rule(queue)])
    if _pid(state_dir):
        return
    ready = state_dir / "ready"
    ready.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "novacron.network.linux.classifier",
        "--queue",
        str(queue),
        "--config",
        str(cfg),
        "--ready",
        str(ready),
    ]
    with open(state_dir / "classifier.log", "ab") as log:
        proc = subprocess.Popen(
            nft.in_netns(netns, argv), start_new_session=True, stdout=subprocess.DEVNULL, stderr=log
        )
    (state_dir / "classifier.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise nft.DatapathError(f"classifier did not start: see {state_dir / 'classifier.log'}")
        time.sleep(0.05)


def _has(netns: str | None, tool: str, queue: int) -> bool:
    if not shutil.which(tool):
        return False
    argv = nft.in_netns(netns, [tool, "-w", "-C", *_rule(queue)])
    return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0


def stop(netns: str | None, state_dir: Path, queue: int = 7) -> None:
    for tool, family in (("iptables", "ip"), ("ip6tables", "ip6")):
        while _has(netns, tool, queue):
            nft.run(netns, [tool, "-w", "-D", *_rule(queue)])
            # iptables-nft created the filter table for our rule: leave nothing behind if it is empty
            if " -A " not in " " + nft.run(netns, [f"{tool}-save"], check=False).replace("\n", " "):
                nft.run(netns, ["nft", "delete", "table", family, "filter"], check=False)
    pid = _pid(state_dir)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.02)
    (state_dir / "classifier.pid").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--ready", type=Path)
    a = ap.parse_args()
    c = Classifier(a.queue, a.config)
    if a.ready:
        a.ready.write_text("ok")
    c.serve()


if __name__ == "__main__":
    main()
