"""A private state directory: 0700 directories and 0600 files, for the account the node runs as.

The state directory holds what a local user must never read: the database (signing keys are
sealed there, but tenants' data is not), the KEK files, VM disks, cloud-init seeds with tenants'
user-data, console logs, sockets, backup chunks. Three layers keep it private:

- :func:`set_private_umask` (077) at the top of the server and agent entry points, so that every
  file the process or its children (QEMU, qemu-img, nbdkit) create is private by default;
- explicit modes where files are made (:func:`write_private`, :func:`touch_private`,
  :func:`private_tree`), which hold even where a caller's umask is wider (tests, libraries);
- :func:`harden_once`: an install made by an older version (files 0644) is walked once at
  start-up, everything looser than 0700/0600 is tightened, and each change is logged.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
#: written in the state dir once an older install's tree was tightened (the walk is not repeated)
MARKER = ".private-v1"
#: at most this many changed paths are logged one by one (then a count)
LOG_PATHS = 50


def set_private_umask() -> int:
    """Files made from now on by this process and its children are private; returns the old mask."""
    return os.umask(PRIVATE_UMASK)


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``path`` (replacing it) with mode 0600 whatever the umask."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, raw)
    finally:
        os.close(fd)


def touch_private(path: Path) -> None:
    """Create ``path`` empty (or keep its content) and make it 0600: a file another program
    (QEMU's console log) appends to keeps the mode it finds."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def mkdir_private(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _tighten_one(path: Path, st: os.stat_result) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        want = 0o700
    elif stat.S_ISREG(st.st_mode) or stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        want = mode & 0o700 | 0o600  # keep the owner's execute bit (a script), drop group and other
    else:
        return None
    if mode & 0o077 or (stat.S_ISDIR(st.st_mode) and mode != want):
        os.chmod(path, want)
        return f"{path}: {mode:04o} -> {want:04o}"
    return None


def private_tree(root: Path) -> list[str]:
    """Tighten ``root`` and everything under it (symlinks are not followed); returns the changes."""
    changes: list[str] = []
    if not root.exists():
        return changes
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in [top, *(os.path.join(top, f) for f in files + dirs)]:
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue  # removed meanwhile (a socket of a VM that just stopped)
            if stat.S_ISLNK(st.st_mode):
                continue
            if (change := _tighten_one(Path(name), st)) is not None:
                changes.append(change)
    return sorted(set(changes))


def harden_once(state_dir: Path, others: Iterable[Path] = ()) -> list[str]:
    """Tighten an existing install's state dir (and ``others``: shared images, shared storage,
    local backup targets) once; logs every change. Later starts find the marker and skip the walk."""
    marker = state_dir / MARKER
    mkdir_private(state_dir)
    if marker.exists():
        return []
    changes: list[str] = []
    for root in (state_dir, *others):
        changes += private_tree(Path(root))
    for i, change in enumerate(changes):
        if i < LOG_PATHS:
            log.warning("made private (was readable by other accounts): %s", change)
    if len(changes) > LOG_PATHS:
        log.warning("... and %d more paths made private", len(changes) - LOG_PATHS)
    write_private(marker, f"{len(changes)} paths tightened\n")
    return changes
