"""KVault as a cache: byte limits and eviction orders checked against a model, default TTLs,
pruning by age and idleness, deduplication of every value, health figures, memoize."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ambervault import InvalidArgument, KVault


class Clock:
    """An injectable clock: advanced by hand, in seconds."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


# -- eviction against a model ---------------------------------------------------------------

KEYS = [f"k{i}" for i in range(12)]
LIMIT = 1000


class CacheModel:
    """What the vault should hold: key -> [value, stored_at, used_at, uses] (times in ms)."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.rows: dict = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def size(self) -> int:
        return sum(len(r[0]) for r in self.rows.values())

    def order(self, key: str) -> tuple:
        _value, stored, used, uses = self.rows[key]
        raw = key.encode()
        if self.policy == "least-recently-stored":
            return (stored, raw)
        if self.policy == "least-recently-used":
            return (used, raw)
        return (uses, used, raw)

    def put(self, key: str, value: bytes, now: int) -> None:
        self.rows[key] = [value, now, now, 0]
        while self.size() > LIMIT:
            victims = sorted((k for k in self.rows if k != key), key=self.order)
            if not victims:
                break
            del self.rows[victims[0]]
            self.evictions += 1

    def get(self, key: str, now: int):
        row = self.rows.get(key)
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        row[2] = max(row[2], now)
        row[3] += 1
        return row[0]


def make_machine(policy: str):
    class Machine(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.clock = Clock()
            self.vault = KVault(":memory:", clock=self.clock, max_bytes=LIMIT, eviction=policy)
            self.model = CacheModel(policy)

        def now_ms(self) -> int:
            self.clock.tick(1)
            return int(self.clock.now * 1000)

        @rule(key=st.sampled_from(KEYS), size=st.integers(1, 400), fill=st.integers(0, 255))
        def put(self, key: str, size: int, fill: int) -> None:
            now = self.now_ms()
            value = bytes([fill]) * size
            self.vault[key] = value
            self.model.put(key, value, now)

        @rule(key=st.sampled_from(KEYS))
        def get(self, key: str) -> None:
            now = self.now_ms()
            assert self.vault.get(key) == self.model.get(key, now)

        @rule(key=st.sampled_from(KEYS))
        def delete(self, key: str) -> None:
            self.now_ms()
            assert self.vault.delete(key) == (self.model.rows.pop(key, None) is not None)

        @invariant()
        def same_contents(self) -> None:
            if not hasattr(self, "vault"):
                return
            assert sorted(self.vault.keys()) == sorted(self.model.rows)
            stats = self.vault.stats()
            assert stats["stored_bytes"] == self.model.size()
            # Reads are counted only while they are tracked.
            tracked = policy != "least-recently-stored"
            expected = (self.model.hits, self.model.misses) if tracked else (0, 0)
            assert (stats["hits"], stats["misses"]) == expected
            assert stats["evictions"] == self.model.evictions

        def teardown(self) -> None:
            if hasattr(self, "vault"):
                assert self.vault.check() == []
                self.vault.close()

    Machine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
    return Machine


TestLeastRecentlyStored = make_machine("least-recently-stored").TestCase
TestLeastRecentlyUsed = make_machine("least-recently-used").TestCase
TestLeastFrequentlyUsed = make_machine("least-frequently-used").TestCase


def test_eviction_none_reports_but_keeps_everything():
    vault = KVault(":memory:", max_bytes=100, eviction="none")
    for i in range(5):
        vault[f"k{i}"] = bytes(50)
    assert len(vault) == 5
    assert vault.stats()["stored_bytes"] == 250
    assert vault.stats()["evictions"] == 0


def test_limits_are_stored_in_the_file_and_shown_by_info(tmp_path):
    path = tmp_path / "c.db"
    with KVault(path, max_bytes=10_000, eviction="least-recently-used", default_ttl=60) as v:
        assert v.limits() == {
            "max_bytes": 10_000,
            "eviction": "least-recently-used",
            "default_ttl": 60.0,
            "dedup": "large",
            "history": 0,
        }
    with KVault(path) as v:
        assert v.limits()["max_bytes"] == 10_000
        assert v.default_ttl == 60.0
        v.set_limits(max_bytes=None, dedup="all")
        assert v.limits() == {
            "max_bytes": None,
            "eviction": "least-recently-used",
            "default_ttl": 60.0,
            "dedup": "all",
            "history": 0,
        }
    out = subprocess.run(
        [sys.executable, "-m", "ambervault", "info", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "least-recently-used" in out and "dedup all" in out and "default TTL 60" in out


def test_lowering_the_limit_evicts_at_once():
    clock = Clock()
    vault = KVault(":memory:", clock=clock, max_bytes=10_000, eviction="least-recently-stored")
    for i in range(10):
        clock.tick()
        vault[f"k{i}"] = bytes(500)
    vault.set_limits(max_bytes=2_000)
    assert sorted(vault.keys()) == ["k6", "k7", "k8", "k9"]


def test_a_transaction_keeps_what_it_wrote_until_it_commits():
    clock = Clock()
    vault = KVault(":memory:", clock=clock, max_bytes=1_000, eviction="least-recently-stored")
    with vault.transaction():
        for i in range(5):
            clock.tick()
            vault[f"k{i}"] = bytes(400)
        assert len(vault) == 5
    assert sorted(vault.keys()) == ["k3", "k4"]


def test_an_open_stream_is_never_evicted(tmp_path):
    clock = Clock()
    vault = KVault(
        tmp_path / "s.db",
        clock=clock,
        chunk_size=1024,
        max_bytes=20_000,
        eviction="least-recently-stored",
    )
    # 10 KiB values, chunked, with no chunk shared (so deduplication stores all of them).
    first = hashlib.shake_256(b"movie").digest(10_240)
    vault["movie"] = first
    with vault.open("movie") as stream:
        clock.tick()
        vault["other"] = hashlib.shake_256(b"other").digest(10_240)
        clock.tick()
        vault["third"] = b"x" * 3000
        # Over the limit: the oldest entry is pinned by the stream, the next one goes.
        assert sorted(vault.keys()) == ["movie", "third"]
        assert stream.read() == first
    clock.tick()
    vault["fourth"] = hashlib.shake_256(b"fourth").digest(10_240)
    assert sorted(vault.keys()) == ["fourth", "third"]


def test_rejected_arguments_open_nothing(tmp_path):
    for kwargs, error in [
        ({"max_bytes": -1}, InvalidArgument),
        ({"max_bytes": "1"}, TypeError),
        ({"eviction": "lru"}, InvalidArgument),
        ({"dedup": "yes"}, InvalidArgument),
        ({"default_ttl": float("nan")}, InvalidArgument),
        ({"default_ttl": 0}, InvalidArgument),
        ({"auto_prune": -1}, InvalidArgument),
    ]:
        with pytest.raises(error):
            KVault(tmp_path / "never.db", **kwargs)
        assert not (tmp_path / "never.db").exists()


# -- TTLs and pruning -----------------------------------------------------------------------


def test_default_ttl_applies_and_ttl_zero_means_never():
    clock = Clock()
    vault = KVault(":memory:", clock=clock, default_ttl=10)
    vault.put("default", b"1")
    vault.put("never", b"2", ttl=0)
    vault.put("short", b"3", ttl=2)
    clock.tick(5)
    assert sorted(vault.keys()) == ["default", "never"]
    clock.tick(10)
    assert list(vault.keys()) == ["never"]
    assert vault.prune() == 2


def test_prune_by_age_and_by_idleness():
    clock = Clock()
    vault = KVault(":memory:", clock=clock, max_bytes=1 << 20, eviction="least-recently-used")
    vault["old"] = b"1"
    clock.tick(100)
    vault["read"] = b"2"
    vault["idle"] = b"3"
    clock.tick(50)
    assert vault["read"] == b"2"
    clock.tick(50)
    assert vault.prune(max_age=150) == 1  # "old", written 200 s ago
    assert vault.prune(max_idle=80) == 1  # "idle": unused for 100 s; "read" used 50 s ago
    assert list(vault.keys()) == ["read"]


def test_without_read_tracking_idleness_counts_from_the_last_write():
    clock = Clock()
    vault = KVault(":memory:", clock=clock)
    vault["a"] = b"1"
    clock.tick(100)
    vault.get("a")
    assert vault.prune(max_idle=50) == 1


def test_auto_prune_runs_on_the_maintenance_thread(tmp_path):
    vault = KVault(tmp_path / "p.db", auto_prune=0.05)
    vault.put("gone", b"1", ttl=0.05)
    vault.put("stays", b"2")
    deadline = time.monotonic() + 10
    while "gone" in vault and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "gone" not in vault
    # Expired, so hidden; the thread then deletes the row without any call from here.
    while vault.stats()["expired_keys"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert vault.stats()["expired_keys"] == 0
    assert vault.prune() == 0
    assert list(vault.keys()) == ["stays"]


# -- deduplication of every value -----------------------------------------------------------


def test_dedup_all_stores_a_small_value_once(tmp_path):
    vault = KVault(tmp_path / "d.db", dedup="all")
    for i in range(100):
        vault[f"k{i}"] = b"17 bytes of value"
    vault["other"] = "a typed str value"
    stats = vault.stats()
    assert stats["unique_values"] == 2
    assert stats["dedup_ratio"] == pytest.approx(101 / 2)
    assert stats["stored_bytes"] < 2 * 64
    assert vault.count_unique_values() == 2
    assert vault["k5"] == b"17 bytes of value"
    assert vault["other"] == "a typed str value"
    assert vault.get_health() == {
        "total_keys": 101,
        "total_objects": 2,
        "total_bytes": stats["stored_bytes"],
        "dedup_ratio": pytest.approx(101 / 2),
    }
    for i in range(100):
        del vault[f"k{i}"]
    assert vault.stats()["unique_chunks"] == 1
    assert vault.sweep() == 0
    assert vault.check() == []


def test_dedup_large_keeps_small_values_in_their_rows():
    vault = KVault(":memory:")
    for i in range(10):
        vault[f"k{i}"] = b"same"
    stats = vault.stats()
    assert stats["stored_bytes"] == 40
    assert stats["unique_values"] == 1  # counted by content however stored


# -- memoize ---------------------------------------------------------------------------------


def test_memoize_caches_results_by_arguments():
    vault = KVault(":memory:")
    calls = []

    @vault.memoize()
    def area(w, h=1, *, unit="m"):
        calls.append((w, h, unit))
        return {"area": w * h, "unit": unit}

    assert area(2, 3) == {"area": 6, "unit": "m"}
    assert area(2, 3) == {"area": 6, "unit": "m"}
    assert area(2, h=3) == {"area": 6, "unit": "m"}  # keyword: a different key
    assert area(2, 3, unit="cm") == {"area": 6, "unit": "cm"}
    assert calls == [(2, 3, "m"), (2, 3, "m"), (2, 3, "cm")]
    assert area.__wrapped__(1) == {"area": 1, "unit": "m"}
    assert area.__name__ == "area"
    assert area.cache_key(2, 3) in vault
    assert area.cache_key(9) not in vault


def test_memoize_stores_none_and_honours_typed_and_ignore():
    vault = KVault(":memory:")
    calls = []

    @vault.memoize()
    def nothing(x):
        calls.append(x)

    assert nothing(1) is None and nothing(1) is None
    assert calls == [1]

    @vault.memoize(typed=True, ignore=(1, "verbose"))
    def f(x, log=None, verbose=False):
        calls.append(("f", x))
        return x

    f(1, "a", verbose=True)
    f(1, "b")  # position 1 and verbose are ignored
    f(True)  # typed: bool differs from int
    assert calls[1:] == [("f", 1), ("f", True)]
    assert f.cache_key(1) == f.cache_key(1, "zzz", verbose=1)


def test_memoize_refuses_unencodable_arguments_and_bad_options():
    vault = KVault(":memory:")

    @vault.memoize()
    def f(x):
        return 1

    with pytest.raises(TypeError):
        f(object())
    assert len(vault) == 0
    with pytest.raises(InvalidArgument):
        vault.memoize(ttl=float("nan"))
    with pytest.raises(InvalidArgument):
        vault.memoize(ignore=(1.5,))
    with pytest.raises(TypeError):
        vault.memoize(f)  # type: ignore[arg-type]


def test_memoize_ttl_expires_results():
    clock = Clock()
    vault = KVault(":memory:", clock=clock)
    calls = []

    @vault.memoize(ttl=10)
    def f(x):
        calls.append(x)
        return x

    f(1)
    clock.tick(5)
    f(1)
    clock.tick(10)
    f(1)
    assert calls == [1, 1]


CONCURRENT = r"""
import sys, time
from ambervault import KVault
vault = KVault(sys.argv[1])
@vault.memoize()
def slow(x):
    time.sleep(0.3)
    return [x, sys.argv[2]]
print(slow(7)[1])
"""


def test_memoize_first_calls_in_two_processes_store_one_result(tmp_path):
    path = tmp_path / "m.db"
    KVault(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(path), name], stdout=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    with KVault(path) as vault:
        assert len(vault) == 1
        (stored,) = vault.values()
        assert stored[0] == 7 and stored[1] in ("a", "b")
    # Each process returned its own computed (or the other's stored) result.
    assert set(outs) <= {"a", "b"}
