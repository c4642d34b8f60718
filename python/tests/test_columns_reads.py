"""Read and bulk paths of columns: point reads, windows and whole-column scans (large slices are filled
straight into a native buffer numpy wraps), each checked against numpy as the model."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from ambervault import ColumnVault

# Big enough that to_numpy takes the direct (native buffer) path: more than 1 MiB.
LARGE = 400_000


@pytest.fixture
def cv(tmp_path):
    vault = ColumnVault(tmp_path / "reads.db")
    yield vault
    vault.close()


@pytest.mark.parametrize("dtype,npdtype", [("f64", "<f8"), ("i32", "<i4"), ("u8", "u1"), ("bytes:8", "S8")])
def test_large_scans_equal_the_data_for_every_fixed_dtype(cv, dtype, npdtype):
    n = LARGE * 8 // np.dtype(npdtype).itemsize  # always past the direct-path threshold
    if npdtype == "S8":
        data = np.array([b"%07d" % i for i in range(n)], dtype="S8")
    else:
        data = (np.arange(n) % 251).astype(npdtype)
    col = cv.create_column("x", dtype)
    col.extend(data)
    out = col.to_numpy()
    assert out.dtype == np.dtype(npdtype) and out.shape == (n,)
    assert np.array_equal(out, data)
    assert np.array_equal(np.asarray(col), data)


def test_large_slices_follow_python_slice_rules(cv):
    data = np.arange(LARGE, dtype="f8")
    col = cv.create_column("x", "f64")
    col.extend(data)
    for start, stop in [
        (None, None),
        (-300_000, None),
        (1, -1),
        (-(10**30), 10**30),  # beyond the i64 range: clamped like any out-of-range bound
        (250_000, 10),  # empty
        (LARGE, None),
    ]:
        assert np.array_equal(col.to_numpy(start, stop), data[start:stop]), (start, stop)
        assert col[start:stop] == data[start:stop].tolist()


def test_large_results_are_independent_writable_arrays_that_outlive_the_vault(tmp_path):
    cv = ColumnVault(tmp_path / "own.db")
    col = cv.create_column("x", "i64")
    col.extend(np.arange(LARGE, dtype="i8"))
    first = col.to_numpy()
    second = col.to_numpy()
    first[0] = -1  # a writable array of its own...
    assert second[0] == 0 and col[0] == 0  # ...that shares nothing with other reads or the file
    cv.close()
    del col, cv, second
    gc.collect()
    assert first[1] == 1 and first[-1] == LARGE - 1 and int(first.sum()) == LARGE * (LARGE - 1) // 2 - 1


def test_windows_and_points_match_numpy_at_random_positions(cv):
    rng = np.random.default_rng(3)
    data = rng.standard_normal(300_000)
    col = cv.create_column("x", "f64")
    col.extend(data)
    for start in rng.integers(0, len(data) - 1000, 200):
        assert np.array_equal(col.to_numpy(int(start), int(start) + 1000), data[start : start + 1000])
    for i in rng.integers(-len(data), len(data), 2000):
        assert col[int(i)] == data[i]


def test_window_bounds_beyond_64_bits_are_clamped_like_slices(cv):
    data = np.arange(5000, dtype="i4")
    col = cv.create_column("x", "i32")
    col.extend(data)
    for start, stop in [(-(2**70), 2**70), (10, 2**64), (-(2**64), 7), (2**63, 2**65), (-1, 2**70)]:
        assert np.array_equal(col.to_numpy(start, stop), data[start:stop]), (start, stop)
    assert np.array_equal(col.to_numpy(4990, 2**63 - 1), data[4990:])


def test_scans_racing_an_appender_always_see_a_whole_prefix(tmp_path):
    # A large read sizes its buffer and fills it in one snapshot: appends landing meanwhile
    # must neither tear the result nor stall the reader. Both loops are bounded.
    path = tmp_path / "race.db"
    cv = ColumnVault(path)
    col = cv.create_column("x", "i64")
    col.extend(np.arange(LARGE, dtype="i8"))
    done = threading.Event()
    appended = []

    def appender() -> None:
        writer = ColumnVault(path)
        wcol = writer["x"]
        n = LARGE
        for _ in range(300):
            if done.is_set():
                break
            wcol.extend(np.arange(n, n + 5000, dtype="i8"))
            n += 5000
            appended.append(n)
        writer.close()

    thread = threading.Thread(target=appender)
    thread.start()
    try:
        lengths = []
        for _ in range(40):
            out = col.to_numpy()
            lengths.append(len(out))
            assert len(out) >= LARGE and len(out) % 5000 == 0
            assert np.array_equal(out, np.arange(len(out), dtype="i8"))
    finally:
        done.set()
        thread.join()
    assert lengths == sorted(lengths) and appended
    cv.close()


def test_bulk_writes_from_numpy_arrays_of_every_layout(cv):
    # Contiguous ndarrays are read in place by the extension; every other layout is copied
    # first. Either way the stored elements must equal the array's.
    col = cv.create_column("x", "f64")
    base = np.arange(100_000, dtype="f8")
    expected = []
    layouts = [
        base,  # contiguous: read in place
        base[::3],  # strided view
        base.reshape(100, 1000).T,  # Fortran-ordered 2-D (flattened in C order)
        np.asfortranarray(base.reshape(1000, 100)),
        base.astype("f4"),  # converted (lossless)
        np.arange(5, dtype="i2"),
        np.array([], dtype="f8"),
    ]
    readonly = base.copy()
    readonly.flags.writeable = False
    layouts.append(readonly)
    for array in layouts:
        col.extend(array)
        expected.extend(np.asarray(array, dtype="f8").reshape(-1).tolist())
    assert len(col) == len(expected)
    assert np.array_equal(col.to_numpy(), np.array(expected))
    # Slice assignment takes the same path.
    col[10:20] = np.full(10, -1.0)
    expected[10:20] = [-1.0] * 10
    col[30:40] = np.full(20, 7.0)[::2]
    expected[30:40] = [7.0] * 10
    assert np.array_equal(col.to_numpy(0, 50), np.array(expected[:50]))


def test_the_array_may_change_after_extend_returns(cv):
    col = cv.create_column("x", "i64")
    data = np.arange(300_000, dtype="i8")
    col.extend(data)
    data[:] = -1  # the column holds its own copy
    del data
    assert col[0] == 0 and col[-1] == 299_999
