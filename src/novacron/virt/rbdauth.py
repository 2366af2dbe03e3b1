"""cephx for QEMU's ``rbd`` block driver: the client name and its key, from the volume's location.

An ``rbd`` volume's location is ``rbd:<pool>/<image>:conf=<ceph.conf>[:id=<client>][:keyring=<file>]``
(``compute/pools.py``; the files at the same paths on every host, as ``/etc/ceph`` is). ``qemu-img``
and ``qemu-io`` take that string as it is. ``blockdev-add`` has no ``keyring`` option, so a
volume of a cluster with cephx gets ``user`` and ``key-secret``: a QEMU ``secret`` object whose
``file`` is the client's key alone, read out of the keyring and written 0600 into the host's
private run directory (``<node>.key``; never the key itself on a command line, where ``ps`` shows
it). The object is named after the volume's node, so plug, unplug and ``launch.json`` follow it.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from novacron.private import write_private
from novacron.virt.base import DriverError

_LOCATION = re.compile(
    r"^rbd:(?P<pool>[^/:]+)/(?P<image>[^:]+):conf=(?P<conf>[^:]+)"
    r"(?::id=(?P<user>[^:]+))?(?::keyring=(?P<keyring>[^:]+))?$"
)


@dataclass(frozen=True)
class RbdLocation:
    pool: str
    image: str
    conf: str
    user: str | None = None
    keyring: str | None = None


def parse(location: str) -> RbdLocation:
    """The parts of an ``rbd`` pool's location."""
    found = _LOCATION.match(location)
    if found is None:
        raise DriverError(f"not an rbd location: {location!r}")
    return RbdLocation(**found.groupdict())


def key_of(keyring: Path, user: str) -> str:
    """The base64 key of ``client.<user>`` in the keyring file (a Ceph keyring is INI)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(keyring.read_text())
    except (OSError, configparser.Error) as exc:
        raise DriverError(f"cannot read the rbd keyring {keyring} (NOVACRON_RBD_KEYRING): {exc}") from exc
    key = parser.get(f"client.{user}", "key", fallback="").strip()
    if not key:
        raise DriverError(
            f"the rbd keyring {keyring} (NOVACRON_RBD_KEYRING) has no key of client.{user} "
            "(NOVACRON_RBD_USER)"
        )
    return key


def secret_id(node: str) -> str:
    """The volume's ``secret`` object (its name holds the node's: ``launch.json`` follows it)."""
    return node + "-key"


def key_file(run_dir: Path, node: str) -> Path:
    return run_dir / f"{node}.key"


def secret_object(where: RbdLocation, node: str, run_dir: Path) -> dict[str, Any] | None:
    """The ``object-add`` arguments of the volume's key (written 0600 beside), or None without cephx."""
    if where.keyring is None:
        return None
    path = key_file(run_dir, node)
    write_private(path, key_of(Path(where.keyring), where.user or "admin"))
    return {"qom-type": "secret", "id": secret_id(node), "file": str(path), "format": "base64"}


def blockdev_options(where: RbdLocation, node: str) -> dict[str, Any]:
    """The ``rbd`` node's options: the image, and with cephx the client and its key's secret."""
    out: dict[str, Any] = {"driver": "rbd", "pool": where.pool, "image": where.image, "conf": where.conf}
    if where.user:
        out["user"] = where.user
    if where.keyring is not None:
        out["key-secret"] = secret_id(node)
        out["auth-client-required"] = ["cephx"]
    return out
