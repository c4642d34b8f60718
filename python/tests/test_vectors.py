"""VectorKVault: values, keys, search against numpy brute force, filters against a model,
recall of the HNSW graph, bad input, sharing a file and its transactions, and other processes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ambervault
from ambervault import InvalidArgument, KVault, NotFound, VectorKVault
from helpers import run_python, same_value


def clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(16, d)) * 4
    return (centres[np.arange(n) % 16] + rng.normal(size=(n, d))).astype(np.float32)


def brute_force(data: np.ndarray, q: np.ndarray, k: int, metric: str) -> np.ndarray:
    x = data.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "l2":
        dist = np.sqrt(((x - qq) ** 2).sum(axis=1))
    elif metric == "cosine":
        dist = 1 - (x @ qq) / (np.linalg.norm(x, axis=1) * np.linalg.norm(qq))
    else:
        dist = 1 - x @ qq
    order = np.lexsort((np.arange(len(x)), dist))
    return order[:k], dist[order[:k]]


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_exact_search_matches_numpy(db_path, metric):
    data = clustered(2000, 24, 1)
    with VectorKVault(db_path, dimensions=24, metric=metric, index="flat") as vk:
        ids = vk.insert_many(data, [i.to_bytes(4, "little") for i in range(len(data))])
        assert ids == list(range(1, 2001))
        queries = clustered(30, 24, 2)
        batch_ids, batch_dist = vk.search_many(queries, k=10)
        for q, row_ids, row_dist in zip(queries, batch_ids, batch_dist):
            want, want_dist = brute_force(data, q, 10, metric)
            found = vk.search(q, k=10)
            assert [f[0] - 1 for f in found] == list(want)
            assert list(row_ids - 1) == list(want)
            np.testing.assert_allclose([f[1] for f in found], want_dist, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(row_dist, want_dist, rtol=1e-4, atol=1e-4)
            assert [int.from_bytes(f[2], "little") for f in found] == list(want)


def test_values_are_typed_and_vectors_come_back(db_path):
    values = [{"a": [1, 2.5, None]}, "text", 42, 1.5, b"raw", np.arange(6).reshape(2, 3), (1, "x")]
    with VectorKVault(db_path, dimensions=4, metric="l2") as vk:
        ids = [vk.insert(np.full(4, i, np.float32), v) for i, v in enumerate(values)]
        for i, (item_id, value) in enumerate(zip(ids, values)):
            vector, got = vk.get_by_id(item_id)
            assert vector.dtype == np.float32 and list(vector) == [i] * 4
            if isinstance(value, np.ndarray):
                assert np.array_equal(got, value) and got.dtype == value.dtype
            else:
                assert same_value(got, value)
        assert vk.get([6.1, 6, 6, 6]) == (1, "x")
        with pytest.raises(NotFound):
            vk.get_by_id(999)


def test_keys_upsert_and_search_returns_them(db_path):
    with VectorKVault(db_path, dimensions=3, metric="l2") as vk:
        first = vk.upsert("doc#1", [1, 0, 0], "one", {"lang": "en"})
        vk.upsert(("org", 7), [0, 1, 0], "two")
        assert vk.upsert("doc#1", [1, 0.1, 0], "uno", {"lang": "es"}) == first
        assert len(vk) == 2
        assert vk.search([1, 0, 0], k=1, with_metadata=True) == [
            ("doc#1", pytest.approx(0.1), "uno", {"lang": "es"})
        ]
        assert vk.search([0, 1, 0], k=1)[0][0] == ("org", 7)
        assert sorted(map(str, vk.keys())) == sorted(["doc#1", str(("org", 7))])
        assert "doc#1" in vk and "nope" not in vk and first in vk
        assert vk.delete(("org", 7)) and not vk.delete(("org", 7))
        assert list(vk.ids()) == [first]


def test_filters_return_the_nearest_matching_items(db_path):
    data = clustered(3000, 8, 3)
    langs = ["en" if i % 50 == 0 else ("de" if i % 2 else "fr") for i in range(3000)]
    meta = [{"lang": lang, "n": i % 3, "ok": i % 4 == 0} for i, lang in enumerate(langs)]
    with VectorKVault(db_path, dimensions=8, metric="l2", index="hnsw") as vk:
        ids = np.array(vk.insert_many(data, [b""] * 3000, metadata=meta))
        for where in ({"lang": "en"}, {"lang": ["en", "fr"], "n": 1}, {"ok": True}, {"lang": "xx"}):
            accepted = np.array(
                [
                    all((m[f] in v) if isinstance(v, list) else m[f] == v for f, v in where.items())
                    for m in meta
                ]
            )
            for q in clustered(5, 8, 4):
                got = [r[0] for r in vk.search(q, k=7, where=where, ef_search=200)]
                subset = np.flatnonzero(accepted)
                if len(subset) == 0:
                    assert got == []
                    continue
                want, _ = brute_force(data[subset], q, 7, "l2")
                expected = list(ids[subset[want]])
                if len(subset) <= 2000:  # selective: answered exactly
                    assert got == expected
                else:
                    assert len(set(got) & set(expected)) >= 6


def test_hnsw_recall_and_the_stored_graph(db_path):
    data = clustered(6000, 32, 5)
    queries = clustered(40, 32, 6)
    with VectorKVault(db_path, dimensions=32, metric="cosine", index="hnsw") as vk:
        vk.insert_many(data, [b""] * len(data))
        vk.build_index()
        info = vk.info()
        assert info["index_bytes"] > 0 and info["loaded"] == ["hnsw"]
        # ef_search 256: at 128 a parallel build's graph (not deterministic) gave recall 0.93
        # in 1 run of 30 on this clustered data, below the bar kept here.
        found, _ = vk.search_many(queries, k=10, ef_search=256)
    hits = sum(
        len(set(row - 1) & set(brute_force(data, q, 10, "cosine")[0])) for row, q in zip(found, queries)
    )
    assert hits / (10 * len(queries)) >= 0.95
    # Reopened: the stored graph answers the same, and check() verifies it against the rows.
    with VectorKVault(db_path) as vk:
        again, _ = vk.search_many(queries, k=10, ef_search=256)
        assert (again == found).mean() > 0.95
        assert vk.info()["loaded"] == ["hnsw"]
        assert vk.dimensions == 32 and vk.metric == "cosine"
    with KVault(db_path) as kv:
        assert kv.check() == []


@pytest.mark.parametrize(
    ("vector", "error"),
    [
        ([1.0, 2.0], InvalidArgument),
        ([[1.0, 2.0, 3.0]], InvalidArgument),
        ([1.0, math.nan, 0.0], InvalidArgument),
        ([1.0, math.inf, 0.0], InvalidArgument),
        ([0.0, 0.0, 0.0], InvalidArgument),
        ([1e39, 0.0, 0.0], InvalidArgument),
        (["a", "b", "c"], TypeError),
        ({"x": 1}, TypeError),
        (b"\x00" * 5, InvalidArgument),
        (np.array([1, 2, 3], dtype=object), TypeError),
    ],
)
def test_bad_vectors_are_refused_and_nothing_is_written(db_path, vector, error):
    with VectorKVault(db_path, dimensions=3, metric="cosine") as vk:
        vk.insert([1.0, 0.0, 0.0], "keep")
        with pytest.raises(error):
            vk.insert(vector, "bad")
        with pytest.raises(error):
            vk.insert_many(vector * 2 if isinstance(vector, bytes) else [vector, vector], ["a", "b"])
        with pytest.raises(error):
            vk.search(vector)
        assert len(vk) == 1


def test_bad_arguments(db_path):
    with VectorKVault(db_path, dimensions=3, metric="l2") as vk:
        assert vk.search([1, 2, 3]) == []
        with pytest.raises(KeyError):
            vk[[1, 2, 3]]
        vk.insert([1, 2, 3], "x")
        assert vk.search([1, 2, 3], k=0) == []
        assert len(vk.search([1, 2, 3], k=100)) == 1
        with pytest.raises(InvalidArgument):
            vk.search([1, 2, 3], k=-1)
        with pytest.raises(InvalidArgument, match="unknown metric"):
            vk.search([1, 2, 3], metric="manhattan")
        with pytest.raises(InvalidArgument):
            vk.insert_many(np.ones((2, 3)), ["only one"])
        with pytest.raises(TypeError):
            vk.insert([1, 2, 3], "x", metadata=["not", "a", "dict"])
        with pytest.raises(TypeError):
            vk.search([1, 2, 3], where={"f": object()})
        with pytest.raises(InvalidArgument):
            vk.update(1)
        with pytest.raises(NotFound):
            vk.update(99, value="x")
        with pytest.raises(TypeError):
            vk.insert([1, 2, 3], object())
        assert len(vk) == 1
    with pytest.raises(InvalidArgument, match="unknown metric"):
        VectorKVault(db_path, table="t2", dimensions=3, metric="l1")
    with pytest.raises(InvalidArgument, match="holds 3"):
        VectorKVault(db_path, dimensions=4)
    with pytest.raises(InvalidArgument, match="dimensions"):
        VectorKVault(db_path, table="t3", dimensions=0)


def test_f16_i8_and_bit_vectors(tmp_path):
    rng = np.random.default_rng(9)
    with VectorKVault(tmp_path / "a.db", dimensions=16, vector_type="f16", metric="l2") as vk:
        data = rng.normal(size=(300, 16)).astype(np.float16)
        vk.insert_many(data, [b""] * 300)
        found = vk.search(data[17], k=1)
        assert found[0][0] == 18 and found[0][1] == 0.0
        assert vk.get_by_id(18)[0].dtype == np.float16
        with pytest.raises(InvalidArgument):
            vk.insert(np.full(16, 70000.0), b"")  # beyond f16's range
    with VectorKVault(tmp_path / "b.db", dimensions=8, vector_type="i8", metric="l2") as vk:
        vk.insert_many(np.array([[1] * 8, [-128] * 8, [127] * 8]), [b"a", b"b", b"c"])
        assert vk.search([-100] * 8, k=1)[0][2] == b"b"
        with pytest.raises(InvalidArgument):
            vk.insert([200] * 8, b"")
        with pytest.raises(InvalidArgument):
            vk.insert([0.5] * 8, b"")
    with VectorKVault(tmp_path / "c.db", dimensions=16, vector_type="bit") as vk:
        assert vk.metric == "hamming"
        bits = rng.integers(0, 2, size=(50, 16)).astype(bool)
        vk.insert_many(bits, list(range(50)))
        probe = bits[7].copy()
        probe[0] = not probe[0]
        got = vk.search(probe, k=1)[0]
        assert got[2] == 7 or got[1] == 0.0
        assert got[1] <= 1.0
        assert list(vk.get_by_id(8)[0]) == list(bits[7])
        with pytest.raises(InvalidArgument):
            vk.insert([2] * 16, b"")


def test_shares_a_kvault_file_and_its_transactions(db_path):
    with KVault(db_path) as kv:
        vk = VectorKVault(kv, dimensions=2, metric="l2")
        with pytest.raises(RuntimeError):
            with kv.transaction():
                kv["photo"] = b"jpeg"
                vk.insert([1, 1], "photo")
                assert vk.search([1, 1], k=1)[0][2] == "photo"
                raise RuntimeError("roll back both")
        assert "photo" not in kv and len(vk) == 0 and vk.search([1, 1]) == []
        with kv.transaction():
            kv["photo"] = b"jpeg"
            vk.insert([1, 1], "photo")
        assert kv["photo"] == b"jpeg" and vk.get([1, 1]) == "photo"
        assert VectorKVault.tables(kv) == ["vec_kvault"]
        assert ambervault.drop_vector_table(kv, "vec_kvault")
        assert VectorKVault.tables(kv) == []


@given(
    st.lists(
        st.tuples(st.sampled_from(["insert", "delete", "update", "search"]), st.integers(0, 40)),
        min_size=1,
        max_size=60,
    )
)
def test_a_model_of_writes_and_searches(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("model") / "m.db"
    model: dict[int, np.ndarray] = {}
    with VectorKVault(path, dimensions=3, metric="l2", index="flat") as vk:
        for op, n in ops:
            vec = np.array([n, n % 7, -n], np.float32)
            if op == "insert":
                model[vk.insert(vec, n)] = vec
            elif op == "delete" and model:
                victim = sorted(model)[n % len(model)]
                assert vk.delete(victim)
                del model[victim]
            elif op == "update" and model:
                target = sorted(model)[n % len(model)]
                vk.update(target, vector=vec)
                model[target] = vec
            elif op == "search":
                got = vk.search(vec, k=5)
                ids = sorted(model)
                if not ids:
                    assert got == []
                    continue
                want, _ = brute_force(np.stack([model[i] for i in ids]), vec, 5, "l2")
                assert [g[0] for g in got] == [ids[w] for w in want]
        assert len(vk) == len(model)


def test_two_processes_insert_while_one_searches(db_path):
    VectorKVault(db_path, dimensions=4, metric="l2", index="hnsw").close()
    writer = """
import sys, numpy as np
from ambervault import VectorKVault
base = int(sys.argv[1])
with VectorKVault(sys.argv[2]) as vk:
    for i in range(30):
        vk.insert_many(np.full((10, 4), base + i, np.float32), [base + i] * 10)
"""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", writer, str(base), str(db_path)]) for base in (0, 1000)]
    with VectorKVault(db_path) as vk:
        while any(p.poll() is None for p in procs):
            for hit in vk.search([500, 500, 500, 500], k=5):
                # Every result is a committed item: its value matches its vector.
                vector, value = vk.get_by_id(hit[0])
                assert vector[0] == value
        assert all(p.wait() == 0 for p in procs)
        assert len(vk) == 600
        found = vk.search([1029, 1029, 1029, 1029], k=10)
        assert [f[2] for f in found] == [1029] * 10
    result = run_python(
        """
import sys
from ambervault import KVault
with KVault(sys.argv[1]) as kv:
    assert kv.check() == [], kv.check()
""",
        str(db_path),
    )
    assert result.returncode == 0, result.stderr


def test_the_graph_after_many_removals_still_returns_every_live_item(db_path):
    data = clustered(1500, 8, 21)
    with VectorKVault(db_path, dimensions=8, metric="l2", index="hnsw") as vk:
        ids = vk.insert_many(data, list(range(1500)))
        vk.build_index()
        vk.delete_many(ids[:1300])
        for q in clustered(5, 8, 22):
            found = vk.search(q, k=500)
            assert sorted(f[2] for f in found) == list(range(1300, 1500))
            nearest, _ = brute_force(data[1300:], q, 10, "l2")
            top = [f[2] - 1300 for f in vk.search(q, k=10, ef_search=200)]
            assert len(set(top) & set(nearest)) >= 9
