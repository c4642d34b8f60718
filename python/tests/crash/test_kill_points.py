"""SIGKILL at random kill points (``harness.KILLS`` per scenario) during
every kind of write. After each kill the file is reopened and checked: (a) every acknowledged
write is present and byte-exact, (b) the one operation in flight is either fully there or not
at all, (c) ``check()`` (SQLite's integrity check plus the vault's invariants) is clean."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from harness import KILLS, run_until_killed

from ambervault import ColumnVault, KVault

CHUNK = 4096


def val(tag: str, i: int, n: int) -> bytes:
    return hashlib.shake_256(f"{tag}:{i}".encode()).digest(n)


def healthy(path) -> None:
    with KVault(path, chunk_size=CHUNK) as kv:
        assert kv.check() == []


# -- key-value scenarios ----------------------------------------------------------------------


def small_puts(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    i = 0
    while True:
        kv[f"k{i}"] = val("p", i, 50 + i % 300)
        ack(i)
        i += 1


def check_small_puts(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        for i in range(acked):
            assert kv[f"k{i}"] == val("p", i, 50 + i % 300)
        inflight = kv.get(f"k{acked}")
        assert inflight in (None, val("p", acked, 50 + acked % 300))
        assert len(kv) in (acked, acked + 1)


def overwrites(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    i = 0
    while True:
        kv[f"slot{i % 7}"] = val("o", i, 10 + (i * 977) % 9000)  # inline and chunked sizes
        ack(i)
        i += 1


def check_overwrites(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        for slot in range(7):
            last = max((i for i in range(acked) if i % 7 == slot), default=None)
            allowed = {None if last is None else val("o", last, 10 + (last * 977) % 9000)}
            if acked % 7 == slot:
                allowed.add(val("o", acked, 10 + (acked * 977) % 9000))
            assert kv.get(f"slot{slot}") in allowed


def prepare_deletes(path):
    with KVault(path, chunk_size=CHUNK) as kv:
        kv.put_many([(f"d{i}", val("d", i, 100 + i * 50)) for i in range(300)])


def deletes(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    for i in range(300):
        assert kv.delete(f"d{i}")
        ack(i)
    while True:
        pass


def check_deletes(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        for i in range(300):
            got = kv.get(f"d{i}")
            if i < acked:
                assert got is None
            elif i == acked:
                assert got in (None, val("d", i, 100 + i * 50))
            else:
                assert got == val("d", i, 100 + i * 50)


def streams(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    i = 0
    while True:
        kv.put_file("video", io.BytesIO(val("s", i, 20_000 + i * 101)))
        ack(i)
        i += 1


def writers(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    i = 0
    while True:
        data = val("w", i, 20_000 + i * 101)
        with kv.open("video", "wb") as w:
            for j in range(0, len(data), 3000):
                w.write(data[j : j + 3000])
        ack(i)
        i += 1


def check_stream(tag):
    def check(path, acked):
        with KVault(path, chunk_size=CHUNK) as kv:
            got = kv.get("video")
            allowed = {val(tag, acked, 20_000 + acked * 101)}
            if acked:
                allowed.add(val(tag, acked - 1, 20_000 + (acked - 1) * 101))
            else:
                allowed.add(None)
            assert got in allowed
            assert kv.stats()["pending_uploads"] == 0  # the killed upload was reclaimed

    return check


def cache_work(tag, puts_per_ack, flush_threshold):
    """Puts of 200 B through the write-back cache, acknowledged each time ``flush_cache()``
    returns after ``puts_per_ack`` of them."""

    def work(path, ack):
        kv = KVault(path, chunk_size=CHUNK)
        kv.enable_cache(cap_bytes=1 << 20, flush_threshold=flush_threshold)
        i = 0
        while True:
            for j in range(puts_per_ack):
                n = i * puts_per_ack + j
                kv[f"{tag}{n}"] = val(tag, n, 200)
            kv.flush_cache()
            ack(i)  # acknowledged only once flush_cache() returned
            i += 1

    return work


# Ten puts per flush, far below the threshold: only flushes write.
cached = cache_work("c", 10, 1 << 19)
# A 16 KiB threshold hands a batch to the background writer about every 70 puts: about seven
# batches land (or are in flight) between two acknowledgements.
cached_behind = cache_work("b", 500, 16 << 10)


def check_cached(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        for n in range(acked * 10):
            assert kv[f"c{n}"] == val("c", n, 200)
        extra = len(kv) - acked * 10
        assert extra in (0, 10)  # the in-flight flush landed whole or not at all


def check_cached_behind(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        present = len(kv)
        # Batches land whole and in the order the puts were made: what survived is every
        # acknowledged put and then a prefix of the ones after it.
        assert present >= acked * 500
        for n in range(present):
            assert kv[f"b{n}"] == val("b", n, 200), n
        assert f"b{present}" not in kv


def transactions(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    col = ColumnVault(kv).ensure("events", "i64")
    i = 0
    while True:
        with kv.transaction():
            kv[f"t{i}"] = val("t", i, 3000 + i)
            col.append(i)
            col.extend([i, i])
        ack(i)
        i += 1


def check_transactions(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        col = list(ColumnVault(kv)["events"]) if "events" in ColumnVault(kv) else []
        n = len(kv)
        assert n in (acked, acked + 1)
        assert col == [k for i in range(n) for k in (i, i, i)]  # KV and columns agree
        for i in range(n):
            assert kv[f"t{i}"] == val("t", i, 3000 + i)


# -- column scenarios, one per dtype family ---------------------------------------------------

FAMILIES = {
    "i64": lambda i: i * 7 - 1000,
    "f64": lambda i: i / 3,
    "bool": lambda i: i % 3 == 0,
    "bytes:8": lambda i: val("b8", i, 1 + i % 8).ljust(8, b"\x00"),
    "bytes": lambda i: val("vb", i, i % 700),
    "str": lambda i: f"line {i} " + "é" * (i % 50),
}


def column_work(dtype):
    make = FAMILIES[dtype]

    def work(path, ack):
        cv = ColumnVault(path, min_chunk_bytes=256, max_chunk_bytes=4096)
        col = cv.ensure("c", dtype)
        n = 0
        op = 0
        while True:
            if op % 2 == 0:
                col.append(make(n))
                n += 1
            else:
                col.extend([make(n + k) for k in range(5)])
                n += 5
            ack(op)
            op += 1

    return work


def column_checker(make, length_after):
    """A check that column "c" holds ``make(k)`` for the first ``length_after(ops)`` elements,
    after ``acked`` operations or the one in flight too."""

    def check(path, acked):
        with ColumnVault(path) as cv:
            values = list(cv["c"]) if "c" in cv else []
            assert len(values) in (length_after(acked), length_after(acked + 1))
            assert values == [make(k) for k in range(len(values))]
            assert cv.check() == []

    return check


def column_check(dtype):
    return column_checker(FAMILIES[dtype], lambda ops: sum(1 if op % 2 == 0 else 5 for op in range(ops)))


def typed_value(i: int):
    """A typed value per step: inline and chunked sizes, several encodings."""
    kind = i % 4
    if kind == 0:
        return {"i": i, "tags": ("a", str(i)), "blob": val("t", i, 20 + (i * 131) % 6000)}
    if kind == 1:
        return [i, -i, 2**70 + i, float(i) / 3]
    if kind == 2:
        import numpy as np

        return np.arange(i % 2000, dtype="<i8") * i
    return f"text {i} " * (1 + i % 700)


def same_typed(a, b) -> bool:
    if hasattr(b, "dtype"):
        return hasattr(a, "dtype") and a.dtype == b.dtype and a.tolist() == b.tolist()
    return type(a) is type(b) and a == b


def typed_puts(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    i = 0
    while True:
        kv[f"t{i % 11}"] = typed_value(i)  # overwrites across encodings and sizes
        ack(i)
        i += 1


def check_typed_puts(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        for slot in range(11):
            last = max((i for i in range(acked) if i % 11 == slot), default=None)
            got = kv.get(f"t{slot}")
            candidates = [None if last is None else typed_value(last)]
            if acked % 11 == slot:
                candidates.append(typed_value(acked))
            assert any(
                (got is None and c is None) or (c is not None and same_typed(got, c)) for c in candidates
            ), (slot, acked)


# -- compressed scenarios: values and chunks compressed (text) or left as they are (noise) ----


def compressible(tag: str, i: int, n: int) -> bytes:
    return (f"{tag} line {i} " * (n // 10 + 1)).encode()[:n]


def mixed_value(i: int) -> bytes:
    n = 10 + (i * 977) % 20_000
    return compressible("z", i, n) if i % 3 else val("z", i, n)


def compressed_overwrites(path, ack):
    kv = KVault(path, chunk_size=CHUNK, compression="lz4" if path.stem.endswith("1") else "zstd")
    i = 0
    while True:
        if i % 5 == 0:
            kv.put_file(f"slot{i % 7}", io.BytesIO(mixed_value(i)))
        else:
            kv[f"slot{i % 7}"] = mixed_value(i)
        ack(i)
        i += 1


def check_compressed_overwrites(path, acked):
    with KVault(path, chunk_size=CHUNK) as kv:
        for slot in range(7):
            last = max((i for i in range(acked) if i % 7 == slot), default=None)
            allowed = {None if last is None else mixed_value(last)}
            if acked % 7 == slot:
                allowed.add(mixed_value(acked))
            assert kv.get(f"slot{slot}") in allowed
        assert kv.stats()["pending_uploads"] == 0


COMPRESSED_FAMILIES = {
    "f64": lambda i: round(20 + (i % 1000) / 100, 2),
    "str": lambda i: f"2026-12-02 INFO request {i % 50} done",
}
# Scenario suffix: (dtype, compression setting).
COMPRESSED_CASES = {"f64": ("f64", "zstd"), "str": ("str", "zstd"), "f64_pco": ("f64", "pco")}


def compressed_column_work(case):
    dtype, setting = COMPRESSED_CASES[case]
    make = COMPRESSED_FAMILIES[dtype]

    def work(path, ack):
        cv = ColumnVault(path, min_chunk_bytes=256, max_chunk_bytes=4096)
        col = cv["c"] if "c" in cv else cv.create_column("c", dtype, compression=setting)
        n = 0
        op = 0
        while True:
            if op % 7 == 6 and n > 10:
                col[n // 2] = make(n // 2)  # a write into a packed chunk
            else:
                col.extend([make(n + k) for k in range(40)])
                n += 40
            ack(op)
            op += 1

    return work


def compressed_column_check(case):
    dtype = COMPRESSED_CASES[case][0]

    def length_after(ops):
        n = 0
        for op in range(ops):
            if not (op % 7 == 6 and n > 10):
                n += 40
        return n

    return column_checker(COMPRESSED_FAMILIES[dtype], length_after)


SCENARIOS = {
    "small_puts": (None, small_puts, check_small_puts),
    "typed_puts": (None, typed_puts, check_typed_puts),
    "overwrites": (None, overwrites, check_overwrites),
    "deletes": (prepare_deletes, deletes, check_deletes),
    "put_file": (None, streams, check_stream("s")),
    "open_wb": (None, writers, check_stream("w")),
    "cache_flush": (None, cached, check_cached),
    "cache_write_behind": (None, cached_behind, check_cached_behind),
    "kv_and_column_transactions": (None, transactions, check_transactions),
    **{f"column_{d}": (None, column_work(d), column_check(d)) for d in FAMILIES},
    "compressed_overwrites": (None, compressed_overwrites, check_compressed_overwrites),
    **{
        f"compressed_column_{c}": (None, compressed_column_work(c), compressed_column_check(c))
        for c in COMPRESSED_CASES
    },
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_kill_points(tmp_path, name):
    prepare, work, check = SCENARIOS[name]
    rng = random.Random(f"{name}-seed")
    survived = 0
    for k in range(KILLS):
        path = tmp_path / f"{k}.db"
        if prepare is not None:
            prepare(path)
        acked = run_until_killed(lambda ack, p=path: work(p, ack), rng)
        check(path, acked)
        healthy(path)
        survived += 1
    assert survived == KILLS
