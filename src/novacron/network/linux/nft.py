"""Running nftables and host commands in a host's network namespace (``None``: the current one)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class DatapathError(RuntimeError):
    """A kernel tool refused what we asked (the message carries its stderr)."""


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(netns: str | None, argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(in_netns(netns, argv), input=stdin, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise DatapathError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def nft_apply(netns: str | None, script: str) -> None:
    """Load ``script`` with ``nft -f``: the kernel applies the whole script or none of it."""
    run(netns, ["nft", "-f", "-"], stdin=script)


def nft_table_exists(netns: str | None, family: str, table: str) -> bool:
    return table in run(netns, ["nft", "list", "tables", family], check=False).split()


def sysctl(netns: str | None, key: str, value: str) -> None:
    run(netns, ["sysctl", "-q", "-w", f"{key}={value}"])
