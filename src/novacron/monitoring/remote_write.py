"""Prometheus remote write 1.0: a ``WriteRequest`` protobuf encoded by hand, snappy-compressed.

The protobuf is small (``WriteRequest{repeated TimeSeries}``, ``TimeSeries{repeated Label, repeated
Sample}``, ``Label{name, value}``, ``Sample{double value, int64 timestamp}``), and encoding it by hand
is what lets one Python process send about a million samples a second (DESIGN.md): a generated
message class costs several times more per sample. A :class:`Series` encodes its labels once, so a
sample costs one ``struct.pack`` and a few concatenations.

Every engine that speaks the protocol accepts this body: VictoriaMetrics (``/api/v1/write``),
Prometheus with ``--web.enable-remote-write-receiver``, Mimir, Thanos receive, vmagent.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Mapping

import cramjam
import httpx

#: (series, unix milliseconds, value): one sample as the store writes it
Sample = tuple["Series", int, float]

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}

_pack_double = struct.Struct("<d").pack


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return bytes((tag << 3 | 2,)) + varint(len(payload)) + payload


@functools.lru_cache(maxsize=1 << 16)
def _label(name: str, value: str) -> bytes:
    """A ``TimeSeries.labels`` field; cached, as a VM's labels recur in each of its series."""
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


class Series:
    """One time series: its metric name and labels, encoded once as ``TimeSeries.labels`` fields.

    Series compare by identity: whoever makes them (``series.py``) keeps one object per label set,
    so grouping a batch by series costs a pointer hash.
    """

    __slots__ = ("encoded", "labels")

    def __init__(self, name: str, labels: Mapping[str, str]) -> None:
        # remote write wants the labels sorted by name, __name__ among them
        self.labels: tuple[tuple[str, str], ...] = tuple(sorted({**labels, "__name__": name}.items()))
        self.encoded = b"".join([_label(k, v) for k, v in self.labels if v != ""])

    @property
    def name(self) -> str:
        """The metric name (``__name__``)."""
        return dict(self.labels)["__name__"]

    def __repr__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels if k != "__name__")
        return f"{self.name}{{{inner}}}"


def encode(samples: Iterable[Sample]) -> bytes:
    """The ``WriteRequest`` protobuf of ``samples`` (uncompressed), one ``TimeSeries`` per series
    with its samples in the order given (engines want them oldest first)."""
    grouped: dict[Series, list[bytes]] = {}
    # a batch holds few distinct timestamps: each one's Sample framing is made once, so a sample
    # costs one pack and two concatenations. Sample = field 1 double (tag 0x09) + field 2 int64
    # (tag 0x10), wrapped as TimeSeries field 2 (tag 0x12) with its length
    framing: dict[int, tuple[bytes, bytes]] = {}
    for series, ms, value in samples:
        frame = framing.get(ms)
        if frame is None:
            stamp = b"\x10" + varint(ms)
            frame = framing[ms] = (b"\x12" + varint(9 + len(stamp)) + b"\x09", stamp)
        encoded = frame[0] + _pack_double(value) + frame[1]
        group = grouped.get(series)
        if group is None:
            grouped[series] = [encoded]
        else:
            group.append(encoded)
    parts = []
    for series, encoded_samples in grouped.items():
        ts = series.encoded + b"".join(encoded_samples)
        parts.append(b"\x0a" + varint(len(ts)) + ts)
    return b"".join(parts)


def compress(body: bytes) -> bytes:
    """Snappy block format (not framed), as the protocol wants."""
    return bytes(cramjam.snappy.compress_raw(body))


class RemoteWriteRejected(Exception):
    """The receiver refused the batch for good (4xx other than 429): sending it again cannot help."""


def post(client: httpx.Client, url: str, body: bytes) -> None:
    """Send a compressed ``WriteRequest`` to a remote-write ``url``. Raises ``RemoteWriteRejected``
    on a 4xx (not 429), ``httpx.HTTPError`` when the receiver is down or answers 5xx/429 (retry)."""
    response = client.post(url, content=body, headers=HEADERS)
    if response.status_code >= 400 and response.status_code != 429 and response.status_code < 500:
        raise RemoteWriteRejected(f"{url} answered {response.status_code}: {response.text[:300]}")
    response.raise_for_status()
