"""``novacron vm metrics``: what a VM does per second, not the counters it has run up since boot.

The API's recent samples (``GET /v1/vms/{id}/metrics``, one per agent interval) carry cumulative
counters: CPU seconds, bytes and operations since the QEMU process started. People want rates, as
``top`` and ``iostat`` show them: each row here is the change between two consecutive samples
divided by the time between them; memory figures are levels and are shown as they are. A counter
that went down (the VM restarted between two samples) gives no rate for that row ("–").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from novacron.cli.client import Client
from novacron.cli.output import Column, human_size, out, print_json, print_list

#: (output key, sample counter, scale): CPU seconds per second x 100 is a percentage of one core
RATE_KEYS: list[tuple[str, str, float]] = [
    ("guest_cpu_percent", "vcpu_time_s", 100.0),
    ("qemu_cpu_percent", "cpu_time_s", 100.0),
    ("disk_read_bytes_per_s", "disk_read_bytes", 1.0),
    ("disk_write_bytes_per_s", "disk_write_bytes", 1.0),
    ("disk_read_ops_per_s", "disk_read_ops", 1.0),
    ("disk_write_ops_per_s", "disk_write_ops", 1.0),
    ("net_rx_bytes_per_s", "net_rx_bytes", 1.0),
    ("net_tx_bytes_per_s", "net_tx_bytes", 1.0),
]


def _level(sample: dict[str, Any]) -> dict[str, float | None]:
    total, available = sample.get("guest_mem_total_bytes"), sample.get("guest_mem_available_bytes")
    used = (
        total - available if isinstance(total, int | float) and isinstance(available, int | float) else None
    )
    return {"qemu_rss_bytes": sample.get("rss_bytes"), "guest_mem_used_bytes": used}


def rates(samples: Sequence[dict[str, Any]]) -> list[dict[str, float | None]]:
    """One row per pair of consecutive samples: its end time, the window in seconds, each counter's
    rate per second (None where it cannot be told) and the memory levels at its end."""
    rows: list[dict[str, float | None]] = []
    for before, after in zip(samples, samples[1:], strict=False):
        dt = float(after.get("time", 0)) - float(before.get("time", 0))
        if dt <= 0:
            continue
        row: dict[str, float | None] = {"time": float(after["time"]), "window_s": round(dt, 3)}
        for key, counter, scale in RATE_KEYS:
            a, b = before.get(counter), after.get(counter)
            if isinstance(a, int | float) and isinstance(b, int | float) and b >= a:
                row[key] = (float(b) - float(a)) / dt * scale
            else:
                row[key] = None
        row.update(_level(after))
        rows.append(row)
    return rows


def summary(rows: Sequence[dict[str, float | None]]) -> dict[str, float | None]:
    """The rates over the whole window: each rate's mean (weighted by its rows' windows)."""
    out: dict[str, float | None] = {"window_s": sum(float(r["window_s"] or 0) for r in rows)}
    for key, _, _ in RATE_KEYS:
        known = [(float(r[key] or 0), float(r["window_s"] or 0)) for r in rows if r.get(key) is not None]
        span = sum(w for _, w in known)
        out[key] = sum(v * w for v, w in known) / span if span else None
    return out


def show(client: Client, found: dict[str, Any], last: int, as_json: bool) -> None:
    """Print the VM's rates over its ``last`` most recent intervals (a table, or JSON)."""
    data = client.get(f"/v1/vms/{found['id']}/metrics")
    rows = rates(data.get("samples", []))[-last:]
    if as_json:
        body = {"vm_id": found["id"], "interval_s": data.get("interval_s"), "rates": rows}
        print_json({**body, "average": summary(rows)})
        return
    if not rows:
        out.print(f"[dim]No rates for {found['name']} yet: it needs two samples (is it running?).[/]")
        return
    columns: list[Column] = [("TIME", lambda r: time.strftime("%H:%M:%S", time.localtime(r["time"])))]
    columns += [(title, _getter(key, unit)) for title, key, unit in COLUMNS]
    title = f"{found['name']}: per second, between samples {data.get('interval_s')} s apart"
    print_list({"items": rows}, columns, as_json=False, empty="", title=title)
    avg = summary(rows)
    out.print(
        f"Average over {avg['window_s']:.0f} s: guest CPU {_text(avg['guest_cpu_percent'], '%')}, "
        f"disk {_text(avg['disk_read_bytes_per_s'], 'B/s')} read, "
        f"{_text(avg['disk_write_bytes_per_s'], 'B/s')} written, "
        f"network {_text(avg['net_rx_bytes_per_s'], 'B/s')} in, {_text(avg['net_tx_bytes_per_s'], 'B/s')} out"
    )


#: (column, rate key, unit) of ``vm metrics``
COLUMNS = [
    ("GUEST CPU", "guest_cpu_percent", "%"),
    ("QEMU CPU", "qemu_cpu_percent", "%"),
    ("GUEST MEM", "guest_mem_used_bytes", "B"),
    ("QEMU RSS", "qemu_rss_bytes", "B"),
    ("DISK READ", "disk_read_bytes_per_s", "B/s"),
    ("DISK WRITE", "disk_write_bytes_per_s", "B/s"),
    ("READ OPS", "disk_read_ops_per_s", "/s"),
    ("WRITE OPS", "disk_write_ops_per_s", "/s"),
    ("NET IN", "net_rx_bytes_per_s", "B/s"),
    ("NET OUT", "net_tx_bytes_per_s", "B/s"),
]


def _text(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "/s":
        return f"{value:.1f}/s"
    return human_size(value) + ("/s" if unit == "B/s" else "")


def _getter(key: str, unit: str) -> Any:
    def get(row: dict[str, Any]) -> str:
        return _text(row.get(key), unit)

    return get
