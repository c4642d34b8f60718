"""Value history (a model-based test of puts, deletes and reads by version and time), pruning,
storage sharing, snapshots across processes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ambervault import DELETED, ColumnVault, InvalidArgument, KVault


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


KEYS = ["a", "b", ("t", 1)]
VALUES = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(),
    st.lists(st.integers(), max_size=3),
    # Chunked (chunk_size 64 below): kept versions keep their chunks.
    st.integers(0, 5).map(lambda i: hashlib.shake_256(b"%d" % i).digest(200)),
)


def make_machine(keep):
    class HistoryMachine(RuleBasedStateMachine):
        """The vault against a model: per key, every (version, time, value) and deletion."""

        @initialize()
        def start(self) -> None:
            self.clock = Clock()
            self.vault = KVault(":memory:", clock=self.clock, chunk_size=64, history=keep)
            self.log: dict = {}  # key -> list of (version, time, value-or-DELETED), oldest first
            self.current: dict = {}  # key -> (version, value)

        def tick(self) -> float:
            self.clock.now += 1
            return self.clock.now

        @rule(key=st.sampled_from(KEYS), value=VALUES)
        def put(self, key, value) -> None:
            now = self.tick()
            self.vault[key] = value
            version = self.current[key][0] + 1 if key in self.current else 1
            self.current[key] = (version, value)
            self.log.setdefault(key, []).append((version, now, value))

        @rule(key=st.sampled_from(KEYS))
        def delete(self, key) -> None:
            now = self.tick()
            existed = self.vault.delete(key)
            assert existed == (key in self.current)
            if existed:
                version = self.current.pop(key)[0]
                self.log[key].append((version, now, DELETED))

        def expected_history(self, key) -> list:
            entries = list(reversed(self.log.get(key, [])))
            values = [e for e in entries if e[2] is not DELETED]
            if keep == "all":
                kept_values = values
            else:
                # The current value (if any) plus `keep` earlier versions.
                kept_values = values[: keep + (1 if key in self.current else 0)]
            if not kept_values:
                return []
            oldest = kept_values[-1]
            return [e for e in entries if e[1] >= oldest[1]]

        @invariant()
        def history_matches(self) -> None:
            if not hasattr(self, "vault"):
                return
            for key in KEYS:
                assert self.vault.history(key) == self.expected_history(key)

        @rule(key=st.sampled_from(KEYS), back=st.integers(0, 12))
        def read_as_of(self, key, back) -> None:
            when = self.clock.now - back + 0.5
            expected = None
            covered = self.expected_history(key)
            for _version, at, value in reversed(self.log.get(key, [])):
                if at <= when:
                    expected = None if value is DELETED else value
                    break
            oldest = covered[-1][1] if covered else None
            if oldest is None or when < oldest:
                expected = None  # before the kept history: nothing known
            assert self.vault.as_of(when).get(key) == expected
            if expected is not None:
                assert key in self.vault.as_of(when)

        def teardown(self) -> None:
            if hasattr(self, "vault"):
                assert self.vault.check() == []
                self.vault.close()

    HistoryMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
    return HistoryMachine


TestHistoryAll = make_machine("all").TestCase
TestHistoryLast2 = make_machine(2).TestCase


def test_versions_and_views_by_time():
    clock = Clock()
    vault = KVault(":memory:", clock=clock, history="all")
    vault["cfg"] = {"lr": 0.1}
    clock.now = 2_000
    vault["cfg"] = {"lr": 0.01}
    vault["other"] = b"x"
    clock.now = 3_000
    del vault["other"]
    assert vault.get("cfg", version=1) == {"lr": 0.1}
    assert vault.get("cfg", version=2) == {"lr": 0.01}
    assert vault.get("cfg", version=3, default="none") == "none"
    view = vault.as_of(1_500)
    assert dict(view.items()) == {"cfg": {"lr": 0.1}}
    assert dict(vault.as_of(2_500).items()) == {"cfg": {"lr": 0.01}, "other": b"x"}
    assert list(vault.as_of(3_500)) == ["cfg"]
    with pytest.raises(KeyError):
        vault.as_of(3_500)["other"]
    assert len(vault.as_of(999)) == 0


def test_history_setting_is_stored_lowered_and_turned_off(tmp_path):
    path = tmp_path / "h.db"
    with KVault(path, history=3) as vault:
        for i in range(6):
            vault["k"] = i
        assert [v for _, _, v in vault.history("k")] == [5, 4, 3, 2]
    with KVault(path) as vault:
        assert vault.limits()["history"] == 3
        vault.set_limits(history=1)
        assert [v for _, _, v in vault.history("k")] == [5, 4]
        assert vault.stats()["history_rows"] == 1
        vault.set_limits(history=0)
        assert [v for _, _, v in vault.history("k")] == [5]
        assert vault.stats()["history_rows"] == 0
        assert vault.check() == []


def test_prune_history_and_its_arguments():
    clock = Clock()
    vault = KVault(":memory:", clock=clock, history="all")
    for i in range(5):
        clock.now += 10
        vault["k"] = i
    clock.now += 100
    assert vault.prune_history(older_than=115) == 2  # ended 130 and 120 s ago
    assert vault.prune_history(keep=1) == 1
    assert [v for _, _, v in vault.history("k")] == [4, 3]
    for bad, error in [
        ({"keep": -1}, InvalidArgument),
        ({"older_than": -5}, InvalidArgument),
        ({"older_than": float("nan")}, TypeError),
    ]:
        with pytest.raises(error):
            vault.prune_history(**bad)
    with pytest.raises(InvalidArgument):
        vault.set_limits(history=-2)
    with pytest.raises(InvalidArgument):
        vault.set_limits(max_bytes=1000)  # a limit would evict into the history
    assert vault.limits()["max_bytes"] is None
    with pytest.raises(TypeError):
        KVault(":memory:", history="some")


def test_a_kept_large_value_shares_its_chunks(tmp_path):
    vault = KVault(tmp_path / "big.db", chunk_size=1 << 16, history="all")
    big = hashlib.shake_256(b"weights").digest(1 << 20)
    vault["model"] = big
    stored = vault.stats()["stored_bytes"]
    vault["model"] = big  # rewritten unchanged: the kept version shares every chunk
    assert vault.stats()["stored_bytes"] == stored
    vault["model"] = big[: 1 << 19] + bytes(1 << 19)  # half changed: half the bytes added
    assert vault.stats()["stored_bytes"] == stored + (1 << 16)  # one zero chunk, stored once
    assert vault.get("model", version=1) == big
    assert vault.stats()["history_bytes"] == 2 << 20
    assert vault.check() == []


WRITER = r"""
import sys
from ambervault import KVault, ColumnVault
kv = KVault(sys.argv[1])
cv = ColumnVault(kv)
col = cv["n"]
for i in range(1, 400):
    with kv.transaction():
        kv["n"] = i
        col.append(i)
print("done", flush=True)
"""


def test_a_snapshot_stays_consistent_while_another_process_writes(tmp_path):
    path = tmp_path / "s.db"
    kv = KVault(path)
    cv = ColumnVault(kv)
    cv.create_column("n", "i64").append(0)
    kv["n"] = 0
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    seen = []
    try:
        while writer.poll() is None:
            with kv.snapshot() as snap:
                n = snap["n"]
                column = snap.columns["n"]
                # The value and the column were written in one transaction each time.
                assert len(column) == n + 1
                assert column[-1] == n
                seen.append(n)
    finally:
        out, _ = writer.communicate(timeout=120)
    assert "done" in out
    assert seen and seen == sorted(seen)
    with kv.snapshot() as snap:
        assert snap["n"] == 399 and len(snap.columns["n"]) == 400
        stats = kv.stats()
        assert stats["open_snapshots"] == 1 and stats["oldest_snapshot_age"] is not None
    assert kv.stats()["open_snapshots"] == 0


def test_in_memory_vaults_cannot_be_snapshotted():
    with pytest.raises(InvalidArgument):
        KVault(":memory:").snapshot()
