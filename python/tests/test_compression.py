"""Compression of key-value tables and columns: round trips through every read path, mixed
codecs in one file, seeks into compressed streams, settings recorded in the file, bad settings
changing nothing, and what is stored on disk."""

from __future__ import annotations

import io
import os
import sqlite3

import numpy as np
import pytest

from ambervault import ColumnVault, InvalidArgument, KVault
from ambervault._ambervault import inspect


def log_text(n: int, seed: int = 0) -> bytes:
    lines = []
    size = 0
    i = seed
    while size < n:
        line = f"2026-12-02T13:{i % 60:02d}:{i % 7:02d} INFO worker={i % 5} step={i} loss={1 / (1 + i):.5f}\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines).encode()[:n]


def stored_codecs(path: os.PathLike[str], table: str = "kvault") -> list[int]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute(f"SELECT codec FROM {table}__content ORDER BY cid")]
    finally:
        con.close()


@pytest.mark.parametrize("setting", ["zstd", "zstd:19", "zstd:-3", "lz4", "zstd:3:0.5"])
def test_every_read_path_returns_the_written_bytes(tmp_path, setting):
    data = log_text(3_000_000)
    with KVault(tmp_path / "v.db", chunk_size=256 << 10, compression=setting) as kv:
        kv["put"] = data
        kv.put_file("stream", io.BytesIO(data))
        with kv.open("writer", "wb") as w:
            for i in range(0, len(data), 70_001):
                w.write(data[i : i + 70_001])
        for key in ("put", "stream", "writer"):
            assert kv[key] == data
            out = io.BytesIO()
            kv.get_to_file(key, out)
            assert out.getvalue() == data
        with kv.open("stream") as r:
            for pos in (0, 262_143, 262_144, 1_000_003, len(data) - 5):
                r.seek(pos)
                assert r.read(10_000) == data[pos : pos + 10_000]
        stats = kv.stats()
        assert stats["stored_bytes"] < stats["logical_bytes"] / 3
        assert kv.check() == []
    assert set(stored_codecs(tmp_path / "v.db")) <= {1, 2}


def test_the_setting_is_recorded_and_a_reopen_can_change_it(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, compression="zstd:7") as kv:
        assert kv.compression == "zstd:7:0.05"
        kv["a"] = log_text(100_000, 1)
    with KVault(path) as kv:
        assert kv.compression == "zstd:7:0.05"
        kv["b"] = log_text(100_000, 2)
    with KVault(path, compression="lz4") as kv:
        kv["c"] = log_text(100_000, 3)
        kv.set_compression(None)
        assert kv.compression is None
        kv["d"] = log_text(100_000, 4)
    with KVault(path, read_only=True) as kv:
        assert kv.compression is None
        for key, seed in zip("abcd", range(1, 5)):
            assert kv[key] == log_text(100_000, seed)
        assert kv.check() == []
    assert {0, 1, 2} == set(stored_codecs(path))


def test_incompressible_values_are_stored_as_they_are(tmp_path):
    noise = np.random.default_rng(5).bytes(2_000_000)
    with KVault(tmp_path / "v.db", compression="zstd") as kv:
        kv["jpeg"] = noise
        assert kv["jpeg"] == noise
    assert set(stored_codecs(tmp_path / "v.db")) == {0}


def test_small_values_stay_inline_and_typed_values_round_trip(tmp_path):
    with KVault(tmp_path / "v.db", compression="zstd") as kv:
        kv["small"] = "x" * 100
        kv["doc"] = {"rows": [{"id": i, "name": f"item {i}"} for i in range(3000)]}
        kv["array"] = np.arange(100_000, dtype="<i8")
        assert kv["small"] == "x" * 100
        assert kv["doc"]["rows"][2999] == {"id": 2999, "name": "item 2999"}
        assert np.array_equal(kv["array"], np.arange(100_000, dtype="<i8"))


@pytest.mark.parametrize("bad", ["gzip", "zstd:0", "zstd:23", "lz4:9", "zstd:3:1.0", "zstd:x", 3])
def test_bad_settings_are_refused_before_anything_is_created(tmp_path, bad):
    path = tmp_path / "v.db"
    with pytest.raises((InvalidArgument, TypeError)):
        KVault(path, compression=bad)
    assert not path.exists()
    with KVault(path) as kv:
        kv["k"] = log_text(50_000)
        with pytest.raises((InvalidArgument, TypeError)):
            kv.set_compression(bad)
        assert kv.compression is None
        cv = ColumnVault(kv)
        with pytest.raises((InvalidArgument, TypeError)):
            cv.create_column("c", "f64", compression=bad)
        assert "c" not in cv


def test_a_file_that_never_compresses_keeps_format_version_1(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path) as kv:
        kv["k"] = log_text(50_000)
    assert inspect(str(path))["format_version"] == 1
    with KVault(path, compression="zstd") as kv:
        kv["z"] = log_text(50_000)
    assert inspect(str(path))["format_version"] == 2
    with ColumnVault(path) as cv:
        cv.create_column("f", "f64", compression="zstd").extend(np.arange(20_000.0))
    assert inspect(str(path))["format_version"] == 2


@pytest.mark.parametrize("dtype, setting", [("f64", "pco"), ("str", "zstd"), ("bytes", "lz4")])
def test_codes_version_2_lacks_raise_the_file_to_version_3(tmp_path, dtype, setting):
    # pco chunks, and the end offsets of text stored as differences, are codes a version-2
    # reader does not know: the file says so before the first such chunk is stored.
    path = tmp_path / "v.db"
    with ColumnVault(path) as cv:
        col = cv.create_column("c", dtype, compression=setting)
        assert inspect(str(path))["format_version"] == 2
        if dtype == "f64":
            col.extend(np.arange(20_000.0))
        else:
            lines = [f"line {i}" for i in range(20_000)]
            col.extend(lines if dtype == "str" else [line.encode() for line in lines])
    assert inspect(str(path))["format_version"] == 3


def test_compressed_columns_round_trip_through_numpy_and_element_writes(tmp_path):
    rng = np.random.default_rng(1)
    signal = np.round(20 + np.cumsum(rng.normal(0, 0.01, 300_000)), 2)
    with ColumnVault(tmp_path / "c.db") as cv:
        col = cv.create_column("temp", "f64", compression="zstd")
        assert col.compression == "zstd:3:0.05"
        for start in range(0, len(signal), 10_000):
            col.extend(signal[start : start + 10_000])
        assert np.array_equal(col.to_numpy(), signal)
        for i in (0, 8191, 8192, 150_001, 299_999):
            assert col[i] == signal[i]
        col[1000] = -1.0
        col.insert(5, 7.5)
        del col[200_000:200_010]
        expected = signal.copy()
        expected[1000] = -1.0
        expected = np.insert(expected, 5, 7.5)
        expected = np.delete(expected, np.s_[200_000:200_010])
        assert np.array_equal(col.to_numpy(), expected)
        logs = cv.create_column("log", "str", compression="lz4")
        lines = [f"INFO request {i % 40} served in {i % 13} ms" for i in range(50_000)]
        logs.extend(lines)
        assert logs[:] == lines
        assert cv.check() == []
    con = sqlite3.connect(tmp_path / "c.db")
    packed = con.execute(
        "SELECT count(*), total(length(data)) FROM ambervault_column_packed WHERE codec != 0"
    ).fetchone()
    con.close()
    assert packed[0] > 0 and packed[1] < len(signal) * 8 * 0.8


def test_column_compression_can_be_changed_and_removed(tmp_path):
    values = np.arange(200_000, dtype="<i8") // 7
    with ColumnVault(tmp_path / "c.db") as cv:
        col = cv.create_column("n", "i64")
        col.extend(values)
        assert col.compression is None
        col.set_compression("zstd:9")
        assert col.compression == "zstd:9:0.05"
        assert np.array_equal(col.to_numpy(), values)
        col.set_compression(None)
        assert col.compression is None
        assert np.array_equal(col.to_numpy(), values)
        assert cv.check() == []
    with ColumnVault(tmp_path / "c.db", read_only=True) as cv:
        assert np.array_equal(cv["n"].to_numpy(), values)


@pytest.mark.parametrize(
    "dtype, values",
    [
        ("f64", np.round(20 + np.cumsum(np.random.default_rng(2).normal(0, 0.01, 200_003)), 2)),
        ("i32", (np.arange(200_003) // 3).astype("<i4")),
        ("u16", (np.arange(200_003) % 1000).astype("<u2")),
        ("f16", np.linspace(-2, 2, 200_003).astype("<f2")),
        ("i8", (np.arange(200_003) % 100 - 50).astype("i1")),
    ],
)
def test_pco_columns_round_trip_and_read_points_and_windows(tmp_path, dtype, values):
    with ColumnVault(tmp_path / "c.db") as cv:
        col = cv.create_column("x", dtype, compression="pco")
        assert col.compression == "pco:8:0.05"
        for start in range(0, len(values), 30_000):
            col.extend(values[start : start + 30_000])
        assert np.array_equal(col.to_numpy(), values)
        for i in (0, 8191, 8192, 100_001, len(values) - 1):
            assert col[i] == values[i]
        assert np.array_equal(col[65_000:70_000], values[65_000:70_000])
        col[10] = values[11]
        expected = values.copy()
        expected[10] = values[11]
        assert np.array_equal(col.to_numpy(), expected)
        assert cv.check() == []
    con = sqlite3.connect(tmp_path / "c.db")
    codecs = {r[0] & 0xFF for r in con.execute("SELECT codec FROM ambervault_column_packed")}
    con.close()
    assert codecs == {3}
    with ColumnVault(tmp_path / "c.db", read_only=True) as cv:
        assert np.array_equal(cv["x"].to_numpy(), expected)


def test_pco_stores_sensor_readings_in_less_than_zstd(tmp_path):
    rng = np.random.default_rng(3)
    readings = np.round(18 + 4 * np.sin(np.arange(400_000) / 8640) + rng.normal(0, 0.05, 400_000), 2)
    sizes = {}
    for setting in ("zstd", "pco"):
        with ColumnVault(tmp_path / f"{setting}.db") as cv:
            cv.create_column("t", "f64", compression=setting).extend(readings)
        con = sqlite3.connect(tmp_path / f"{setting}.db")
        sizes[setting] = con.execute("SELECT total(length(data)) FROM ambervault_column_packed").fetchone()[0]
        con.close()
    assert sizes["pco"] < 0.7 * sizes["zstd"], sizes


def test_pco_vectors_and_offsets_of_compressed_text(tmp_path):
    emb = np.random.default_rng(4).normal(size=(5_000, 12)).astype("<f4")
    lines = [f"GET /v1/items/{i} 200 {i % 97} ms" for i in range(100_000)]
    with ColumnVault(tmp_path / "c.db") as cv:
        vec = cv.create_column("emb", "vec:f32:12", compression="pco")
        vec.extend(emb)
        assert np.array_equal(vec.to_numpy(), emb)
        # Text is not numbers: pco is refused and nothing is created.
        with pytest.raises(InvalidArgument, match="pco compresses numbers only"):
            cv.create_column("log", "str", compression="pco")
        assert "log" not in cv
        log = cv.create_column("log", "str", compression="zstd")
        log.extend(lines)
        with pytest.raises(InvalidArgument, match="pco compresses numbers only"):
            log.set_compression("pco")
        assert log.compression == "zstd:3:0.05"
        assert log[:] == lines
        assert cv.check() == []


@pytest.mark.parametrize("bad", ["pco", "pco:5", "pco:13", "pco:-1"])
def test_pco_is_refused_for_key_value_tables(tmp_path, bad):
    path = tmp_path / "v.db"
    with pytest.raises(InvalidArgument):
        KVault(path, compression=bad)
    assert not path.exists()
    with KVault(path) as kv:
        with pytest.raises(InvalidArgument):
            kv.set_compression(bad)
        assert kv.compression is None
