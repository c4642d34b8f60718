"""Codecs compared on the compression benchmark's data, chunk by chunk, outside any store.

Why ``compression="pco"`` exists, and why zstd's files stay above zarr's: the 1M f64 sensor
readings of ``col_timeseries_f64_*`` and the end offsets of the 1M log lines of
``col_log_lines_*``, cut into 64 KiB chunks (ambervault's column chunk) and, for zstd, 512 KiB
(zarr's chunk in the benchmark), compressed by numcodecs' codecs (the same C libraries zarr and
h5py use) and by pcodec. Prints the compressed bytes of each and the best-of-5 decode rate.

Run: .venv-bench/bin/python benches/codec_comparison.py
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, List

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import compression_workloads as cw

Codec = Callable[[bytes], bytes]


def _best(f: Callable[[], object], reps: int = 5) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def _row(name: str, raw: bytes, encode: Codec, decode: Codec, chunk: int = 1 << 16) -> None:
    pieces = [encode(raw[i : i + chunk]) for i in range(0, len(raw), chunk)]
    seconds = _best(lambda: [decode(p) for p in pieces])
    size = sum(len(p) for p in pieces)
    print(
        f"{name:38s} {chunk >> 10:4d} KiB chunks {size / 1e6:7.3f} MB  decode {len(raw) / seconds / 1e9:5.2f} GB/s"
    )


def main() -> None:
    from numcodecs import Blosc, Shuffle, Zstd
    from numcodecs.pcodec import PCodec

    readings = cw.sensor_signal(1_000_000)
    raw = readings.tobytes()
    print(f"1M f64 readings: {len(raw) / 1e6:.3f} MB raw")
    shuffle = Shuffle(8)
    for level in (3, 9):
        z = Zstd(level=level)
        _row(f"zstd {level}", raw, z.encode, z.decode)
    z = Zstd(level=3)
    _row("zstd 3", raw, z.encode, z.decode, 1 << 19)
    _row(
        "byte shuffle + zstd 3",
        raw,
        lambda c: z.encode(shuffle.encode(c)),
        lambda c: shuffle.decode(z.decode(c)),
    )
    for name, mode in (("shuffle", Blosc.SHUFFLE), ("bitshuffle", Blosc.BITSHUFFLE)):
        b = Blosc(cname="zstd", clevel=5, shuffle=mode)
        _row(f"blosc {name} + zstd 5", raw, b.encode, b.decode)

    def scaled_deltas(chunk: bytes) -> bytes:
        values = np.frombuffer(chunk, "<f8")
        ints = np.round(values * 100).astype("<i8")
        assert np.array_equal(ints / 100, values)
        return z.encode(np.diff(ints, prepend=0).tobytes())

    def undo_scaled(chunk: bytes) -> bytes:
        return (np.cumsum(np.frombuffer(z.decode(chunk), "<i8")) / 100).tobytes()

    _row("x100 as integers, differences + zstd 3", raw, scaled_deltas, undo_scaled)
    for level in (4, 8):
        by_level = PCodec(level=level)
        _row(f"pco {level}", raw, lambda c, p=by_level: p.encode(np.frombuffer(c, "<f8")), by_level.decode)

    cw.prepare("col_log_lines_scan", 1_000_000)
    with open(cw._log_cache(1_000_000), "rb") as f:
        lines: List[bytes] = f.read().split(b"\n")
    ends = np.cumsum([len(line) for line in lines]).astype("<u8").tobytes()
    print(f"end offsets of 1M log lines: {len(ends) / 1e6:.3f} MB raw")
    _row(
        "byte shuffle + zstd 3 (version 2)",
        ends,
        lambda c: z.encode(shuffle.encode(c)),
        lambda c: shuffle.decode(z.decode(c)),
    )

    def differences(chunk: bytes) -> bytes:
        values = np.frombuffer(chunk, "<u8")
        return z.encode(shuffle.encode(np.diff(values, prepend=np.uint64(0)).tobytes()))

    def undo_differences(chunk: bytes) -> bytes:
        return np.cumsum(np.frombuffer(shuffle.decode(z.decode(chunk)), "<u8")).tobytes()

    _row("differences + byte shuffle + zstd 3", ends, differences, undo_differences)
    p = PCodec(level=8)
    _row("pco 8", ends, lambda c: p.encode(np.frombuffer(c, "<u8")), p.decode)


if __name__ == "__main__":
    main()
