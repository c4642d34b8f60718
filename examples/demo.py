"""ambervault demo: store and stream real files in one SQLite vault.

Creates a small media folder (images, a 64 MiB video, a log), streams every file into a vault,
range-reads the middle of the video without loading it, exports it back and verifies it
byte-for-byte, batches 10,000 small records through the write-back cache, and prints what it
did. Run: ``make demo`` (or ``python examples/demo.py [--keep DIR]``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import ambervault


def make_media(folder: Path) -> None:
    """Write a few real files: PNG-headed images, an MP4-headed video, a text log."""
    (folder / "images").mkdir(parents=True)
    for i in range(5):
        body = hashlib.shake_256(f"image{i}".encode()).digest(200_000 + i * 50_000)
        (folder / "images" / f"cat_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    with open(folder / "video.mp4", "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42")
        block = hashlib.shake_256(b"video").digest(1 << 20)
        for i in range(64):
            f.write(i.to_bytes(4, "little") + block[4:])
    lines = [f"2026-11-21T12:00:{i % 60:02d} request {i} served in {i % 17}ms\n" for i in range(20_000)]
    (folder / "server.log").write_text("".join(lines))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the vault")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="ambervault-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    media = workdir / "media"
    if not media.exists():
        make_media(media)
    vault_path = workdir / "media.db"
    print(f"ambervault {ambervault.__version__} (SQLite {ambervault.SQLITE_VERSION})")
    print(f"vault file: {vault_path}")

    with ambervault.KVault(vault_path) as vault:
        # 1. Stream every file in; keys are their paths relative to the media folder.
        t0 = time.perf_counter()
        total = 0
        for path in sorted(media.rglob("*")):
            if path.is_file():
                with open(path, "rb") as f:
                    total += vault.put_file(path.relative_to(media).as_posix(), f)
        dt = time.perf_counter() - t0
        print(
            f"stored {len(vault)} files, {total / 2**20:.1f} MiB in {dt:.2f}s "
            f"({total / 2**20 / dt:.0f} MiB/s)"
        )

        # 2. Prefix scan: only the images.
        for key in vault.keys(prefix="images/"):
            meta = vault.info(key)
            assert meta is not None and isinstance(key, str)  # written above with str keys
            print(f"  {key:<20} {meta['size']:>9,} bytes")

        # 3. Range read from the middle of the video: only the touched chunk is read.
        with vault.open("video.mp4") as video:
            video.seek(32 << 20)
            frame = video.read(16)
        with open(media / "video.mp4", "rb") as f:
            f.seek(32 << 20)
            assert frame == f.read(16)
        print(f"read 16 bytes at offset 32 MiB of video.mp4: {frame.hex()}")

        # 4. Stream the video back out and verify it byte for byte.
        out = workdir / "video.copy.mp4"
        with open(out, "wb") as f:
            written = vault.get_to_file("video.mp4", f)
        same = sha256_of(out) == sha256_of(media / "video.mp4")
        print(f"exported {written / 2**20:.0f} MiB to {out.name}: sha256 {'matches' if same else 'DIFFERS'}")
        if not same:
            raise SystemExit("round trip changed the video")
        os.remove(out)

        # 5. Many small records, batched through the write-back cache.
        t0 = time.perf_counter()
        with vault.cache(cap_bytes=32 << 20, flush_threshold=8 << 20):
            for i in range(10_000):
                vault[f"event:{i:05d}"] = f'{{"id": {i}, "ok": true}}'.encode()
        dt = time.perf_counter() - t0
        print(f"cached and flushed 10,000 small records in {dt:.3f}s")
        print(f"last event: {vault['event:09999'].decode()}")

        stats = vault.stats()
        print(
            f"vault: {stats['keys']:,} keys, {stats['logical_bytes'] / 2**20:.1f} MiB of values, "
            f"{stats['chunks']} chunks; file {stats['file_bytes'] / 2**20:.1f} MiB"
        )
    if args.keep is None:
        for path in sorted(workdir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        workdir.rmdir()
    print("done")


if __name__ == "__main__":
    main()
