"""Backup chunk store against restic and borg, side by side in one run on the same disk image.

1. Chunk naming: HMAC-SHA256 vs keyed BLAKE3 over 4 MiB chunks (one thread each), and the whole
   per-chunk pipeline (digest + zstd-3 + AES-256-GCM).
2. Data: a raw disk image (default 4 GiB) holding an ext4 filesystem built by ``mke2fs -d`` from
   real files of this machine's /usr (share, bin, several lib trees: about 3 GiB). Then 1 % of the
   image's blocks are overwritten with random bytes, in 1 MiB runs at random offsets (a guest
   rewriting some files), and the runs are what a QEMU dirty bitmap would report.
3. Full backup, incremental backup and restore of the image with: NovaCron's ChunkStore (local
   target, 4 MiB chunks, SHA-256 names, zstd-3, AES-256-GCM; the incremental reads only the changed
   chunks, as with a dirty bitmap), restic (Debian's, repo v2, default compression) and borg
   (Debian's, ``repokey-blake2``, ``-C zstd,3``); both re-read the whole changed file, which is all
   a file-level tool can do. Stored bytes are ``du`` of each repository; each restore is compared
   byte for byte with the image.

The image stays in the page cache for every tool alike (nothing drops caches on this shared host).

Run: .venv/bin/python bench/bench_backup_store.py [--size-gib 4] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import blake3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from novacron.backup.codec import Codec  # noqa: E402
from novacron.backup.keys import KeyService, TenantKey  # noqa: E402
from novacron.backup.store import ChunkStore, chunks_for_ranges, file_reader  # noqa: E402
from novacron.backup.targets import LocalTarget  # noqa: E402

MiB = 1 << 20
SOURCES = [
    "/usr/share",
    "/usr/bin",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/jvm",
    "/usr/lib/llvm-14",
    "/usr/lib/chromium",
]
PASSWORD = "bench-password"


def rate(nbytes: float, seconds: float) -> str:
    return f"{nbytes / MiB / seconds:8.1f} MiB/s"


def hashing(total_mib: int = 512) -> dict[str, float]:
    chunks = [os.urandom(4 * MiB) for _ in range(8)]
    key = os.urandom(32)
    out: dict[str, float] = {}
    n = total_mib // 4
    hashers: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("hmac-sha256", lambda d: hmac.new(key, d, hashlib.sha256).digest()),
        ("blake3-keyed", lambda d: blake3.blake3(d, key=key).digest()),
    ]
    for name, fn in hashers:
        t = time.perf_counter()
        for i in range(n):
            fn(chunks[i % 8])
        out[name] = total_mib / (time.perf_counter() - t)
    # the full per-chunk pipeline on filesystem-like data (half compressible)
    sample = b"".join(os.urandom(2048) + bytes(range(256)) * 8 for _ in range(1024))
    for digest in ("sha256", "blake3"):
        codec = Codec(TenantKey("bench", os.urandom(32), os.urandom(32)), digest)
        t = time.perf_counter()
        for _ in range(32):
            codec.seal(codec.chunk_id(sample), sample)
        out[f"pipeline-{digest}"] = 32 * 4 / (time.perf_counter() - t)
    return out


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MiB):
            h.update(block)
    return h.hexdigest()


def build_image(work: Path, size_gib: int) -> Path:
    image = work / "disk.raw"
    staging = work / "staging"
    staging.mkdir()
    budget = size_gib * 2**30 * 0.8  # ext4 metadata and slack
    for src in SOURCES:
        if not Path(src).is_dir():
            continue
        need = du(Path(src))
        if need > budget:
            continue
        budget -= need
        dest = staging / src.strip("/").replace("/", "_")
        # hard links where /usr shares the filesystem (no copy), else a real copy
        if subprocess.run(["cp", "-al", src, str(dest)], capture_output=True).returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["cp", "-a", src, str(dest)], check=True)
    subprocess.run(["truncate", "-s", f"{size_gib}G", str(image)], check=True)
    r = subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(staging), str(image)], capture_output=True, text=True
    )
    shutil.rmtree(staging)
    if r.returncode != 0:  # full: the image is smaller than the files
        raise SystemExit(f"mke2fs failed: {r.stderr.strip()}")
    return image


def mutate(image: Path, pct: float, run_mib: int, seed: int = 7) -> list[tuple[int, int]]:
    size = image.stat().st_size
    runs = max(1, int(size * pct / 100 / (run_mib * MiB)))
    rng = random.Random(seed)
    ranges = []
    with open(image, "r+b") as f:
        for _ in range(runs):
            off = rng.randrange(0, size - run_mib * MiB) // 4096 * 4096
            f.seek(off)
            f.write(os.urandom(run_mib * MiB))
            ranges.append((off, run_mib * MiB))
        f.flush()
        os.fsync(f.fileno())
    return ranges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--change-pct", type=float, default=1.0)
    ap.add_argument("--run-mib", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/nc-bench-backup")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results: dict[str, Mapping[str, float]] = {}
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print("\n== chunk naming and sealing, 4 MiB chunks, one thread ==")
    h = hashing()
    for k, v in h.items():
        print(f"  {k:18s} {v:8.1f} MiB/s")
    results["hashing_mib_s"] = h

    try:
        image = build_image(work, args.size_gib)
        size = image.stat().st_size
        used = image.stat().st_blocks * 512
        print(
            f"\n== image: {size / 2**30:.1f} GiB raw ext4, "
            f"{used / 2**30:.2f} GiB allocated (files from /usr) =="
        )
        env = dict(
            os.environ,
            RESTIC_PASSWORD=PASSWORD,
            RESTIC_CACHE_DIR=str(work / "restic-cache"),
            BORG_PASSPHRASE=PASSWORD,
            BORG_BASE_DIR=str(work / "borg-base"),
        )
        restic_repo, borg_repo = work / "restic", work / "borg"
        run(["restic", "-q", "-r", str(restic_repo), "init"], env)
        run(["borg", "init", "-e", "repokey-blake2", str(borg_repo)], env)
        store = ChunkStore(LocalTarget(work / "novacron"), KeyService(work / "kek"))
        reader, _, close = file_reader(image)

        def ours_full() -> float:
            t = time.perf_counter()
            store.write_snapshot("bench", "full", "vda", reader, size)
            return time.perf_counter() - t

        full = {
            "novacron": ours_full(),
            "restic": run(["restic", "-q", "-r", str(restic_repo), "backup", image.name], env, cwd=work),
            "borg": run(["borg", "create", "-C", "zstd,3", f"{borg_repo}::full", image.name], env, cwd=work),
        }
        stored = {"novacron": du(work / "novacron"), "restic": du(restic_repo), "borg": du(borg_repo)}
        print("\n== full backup ==")
        for tool in full:
            print(
                f"  {tool:9s} {full[tool]:7.1f} s  {rate(size, full[tool])}  "
                f"stored {stored[tool] / MiB:8.1f} MiB"
            )

        ranges = mutate(image, args.change_pct, args.run_mib)
        changed = chunks_for_ranges(ranges, store.chunk_size)
        print(
            f"\n== incremental: {len(ranges)} runs of {args.run_mib} MiB changed "
            f"({args.change_pct:g} % of blocks) -> "
            f"{len(changed)} of {size // store.chunk_size} chunks dirty =="
        )
        t = time.perf_counter()
        info = store.write_snapshot("bench", "inc", "vda", reader, size, changed, parent="full")
        inc = {"novacron": time.perf_counter() - t}
        inc["restic"] = run(["restic", "-q", "-r", str(restic_repo), "backup", image.name], env, cwd=work)
        inc["borg"] = run(["borg", "create", "-C", "zstd,3", f"{borg_repo}::inc", image.name], env, cwd=work)
        close()
        stored2 = {"novacron": du(work / "novacron"), "restic": du(restic_repo), "borg": du(borg_repo)}
        st = info.disks["vda"].stats
        for tool in inc:
            print(
                f"  {tool:9s} {inc[tool]:7.2f} s  ({full[tool] / inc[tool]:5.1f}x faster than its full)  "
                f"+{(stored2[tool] - stored[tool]) / MiB:7.1f} MiB stored"
            )
        print(f"  novacron read {st['bytes_read'] / MiB:.0f} MiB, uploaded {st['chunks_uploaded']} chunks")
        ratio = {t: (2 * size) / stored2[t] for t in stored2}
        print("  logical/stored (2 snapshots): " + ", ".join(f"{t} {r:.2f}" for t, r in ratio.items()))

        want = sha256_file(image)
        print("\n== restore of the incremental snapshot ==")
        restore = {}
        out = work / "restore"
        out.mkdir()
        t = time.perf_counter()
        store.restore_to("bench", "inc", "vda", out / "novacron.raw")
        restore["novacron"] = time.perf_counter() - t
        assert sha256_file(out / "novacron.raw") == want, "novacron restore differs"
        (out / "novacron.raw").unlink()
        restore["restic"] = run(
            ["restic", "-q", "-r", str(restic_repo), "restore", "latest", "--target", str(out / "restic")],
            env,
        )
        assert sha256_file(out / "restic" / image.name) == want, "restic restore differs"
        shutil.rmtree(out / "restic")
        (out / "borg").mkdir()
        restore["borg"] = run(["borg", "extract", "--sparse", f"{borg_repo}::inc"], env, cwd=out / "borg")
        assert sha256_file(out / "borg" / image.name) == want, "borg restore differs"
        shutil.rmtree(out / "borg")
        for tool in restore:
            print(f"  {tool:9s} {restore[tool]:7.1f} s  {rate(size, restore[tool])}  (identical)")
        results.update(
            full_s=full,
            incremental_s=inc,
            restore_s=restore,
            stored_full=stored,
            stored_both=stored2,
            dedup_ratio=ratio,
        )
        print("\n" + json.dumps(results, indent=1, default=float))
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
