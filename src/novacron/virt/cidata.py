"""NoCloud cloud-init seed: an ISO 9660 volume labelled ``cidata``.

Built in Python with pycdlib (no genisoimage needed). File names are ISO 9660
level-1 (8.3 with ``;1``); the real names (``meta-data``, ``user-data``,
``network-config``) come from Rock Ridge and Joliet, which Linux prefers.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pycdlib

#: real name -> ISO 9660 level-1 name
_FILES = {
    "meta-data": "/METADATA.;1",
    "user-data": "/USERDATA.;1",
    "network-config": "/NETWORKC.;1",
    "vendor-data": "/VENDORDA.;1",
}


def _yaml_scalar(value: Any) -> str:
    """A YAML-safe scalar; JSON is a subset of YAML, so quote anything unusual."""
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value)
    s = str(value)
    if s and all(c.isalnum() or c in "-_." for c in s):
        return s
    return json.dumps(s)


def render_meta_data(meta_data: dict[str, Any], instance_id: str, hostname: str) -> str:
    """NoCloud meta-data as simple YAML (``key: value`` lines; nested values as JSON)."""
    data: dict[str, Any] = {"instance-id": instance_id, "local-hostname": hostname}
    data.update(meta_data)
    lines = []
    for key, value in data.items():
        if isinstance(value, dict | list):
            lines.append(f"{key}: {json.dumps(value)}")
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


def build_cidata_iso(
    meta_data: str,
    user_data: str = "",
    network_config: str | None = None,
    vendor_data: str | None = None,
) -> bytes:
    """The bytes of a NoCloud seed ISO with the given file contents."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident="cidata", joliet=3, rock_ridge="1.09")
    contents = {"meta-data": meta_data, "user-data": user_data}
    if network_config is not None:
        contents["network-config"] = network_config
    if vendor_data is not None:
        contents["vendor-data"] = vendor_data
    for name, text in contents.items():
        raw = text.encode()
        iso.add_fp(io.BytesIO(raw), len(raw), _FILES[name], rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def write_cidata_iso(
    path: Path,
    meta_data: str,
    user_data: str = "",
    network_config: str | None = None,
    vendor_data: str | None = None,
) -> None:
    """Write the seed atomically (temp file + rename) so a crash never leaves half an ISO."""
    data = build_cidata_iso(meta_data, user_data, network_config, vendor_data)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_cidata_iso(path: Path) -> dict[str, str]:
    """The files of a seed ISO by their Rock Ridge names (for tests and diagnostics)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        files: dict[str, str] = {}
        for real in _FILES:
            buf = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(buf, rr_path=f"/{real}")
            except pycdlib.pycdlibexception.PyCdlibInvalidInput:
                continue
            files[real] = buf.getvalue().decode()
        return files
    finally:
        iso.close()


def volume_label(path: Path) -> str:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label: str = iso.pvd.volume_identifier.decode().strip()
        return label
    finally:
        iso.close()
