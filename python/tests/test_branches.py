"""Branches: a model-based test of forks, writes, diffs, merges and branch deletion against
in-memory dicts; merge strategies; bundles into branches; bad input; handles and files."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule

from ambervault import DELETED, Conflict, InvalidArgument, KVault
from ambervault.exceptions import ClosedError

KEYS = ["a", "b", "c", b"raw", ("t", 1)]
VALUES = st.one_of(
    st.binary(max_size=30),
    st.text(max_size=10),
    st.integers(),
    # Chunked (chunk_size 64 below): forks and merges share these blobs.
    st.integers(0, 4).map(lambda i: hashlib.shake_256(b"%d" % i).digest(300)),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class BranchMachine(RuleBasedStateMachine):
    """The vault against a model: per branch a dict, its parent, and per branch the model
    "time" of each key's last write; merges take the source's keys written since the fork or
    the last merge in the same direction."""

    names = Bundle("names")

    @initialize(target=names)
    def start(self):
        self.vault = KVault(":memory:", chunk_size=64, clock=Clock())
        self.state = {"main": {}}
        self.parent = {"main": None}
        self.written = {"main": {}}  # branch -> key -> step of its last write
        self.fork_step = {"main": 0}
        self.merged_at = {}  # (source, target) -> step after the merge
        self.step = 0
        self.count = 0
        return "main"

    def tick(self):
        self.step += 1
        return self.step

    def handle(self, name):
        return self.vault if name == "main" else self.vault.branch(name)

    @rule(name=names, key=st.sampled_from(KEYS), value=VALUES)
    def put(self, name, key, value):
        if name not in self.state:
            return
        self.handle(name)[key] = value
        self.state[name][key] = value
        self.written[name][key] = self.tick()

    @rule(name=names, key=st.sampled_from(KEYS))
    def delete(self, name, key):
        if name not in self.state:
            return
        existed = self.handle(name).delete(key)
        assert existed == (key in self.state[name])
        if existed:
            del self.state[name][key]
            self.written[name][key] = self.tick()

    @precondition(lambda self: len(self.state) < 5)
    @rule(target=names, source=names)
    def fork(self, source):
        if source not in self.state:
            return source
        self.count += 1
        name = f"b{self.count}"
        self.vault.create_branch(name, from_=source)
        self.state[name] = dict(self.state[source])
        self.parent[name] = source
        self.written[name] = {}
        self.fork_step[name] = self.tick()
        return name

    @rule(name=names)
    def delete_branch(self, name):
        if name not in self.state:
            return
        has_children = any(p == name for p in self.parent.values())
        if name == "main" or has_children:
            with pytest.raises(InvalidArgument):
                self.vault.delete_branch(name)
            return
        self.vault.delete_branch(name)
        for table in (self.state, self.parent, self.written, self.fork_step):
            del table[name]
        self.merged_at = {k: v for k, v in self.merged_at.items() if name not in k}

    @rule(a=names, b=names)
    def diff(self, a, b):
        if a not in self.state or b not in self.state:
            return
        left, right = self.state[a], self.state[b]
        expected = set()
        for key in set(left) | set(right):
            if key not in left:
                expected.add((key, "added"))
            elif key not in right:
                expected.add((key, "removed"))
            elif left[key] != right[key] or type(left[key]) is not type(right[key]):
                expected.add((key, "changed"))
        assert set(self.vault.diff(a, b)) == expected

    @rule(source=names, into=names, fail=st.booleans())
    def merge(self, source, into, fail):
        if source not in self.state or into not in self.state:
            return
        related = self.parent.get(source) == into or self.parent.get(into) == source
        if not related:
            with pytest.raises(InvalidArgument):
                self.vault.merge(source, into, "source_wins")
            return
        child = source if self.parent[source] == into else into
        base = max(self.fork_step[child], self.merged_at.get((source, into), 0))
        theirs, ours = self.state[source], self.state[into]
        changes, conflicts = [], []
        for key, at in self.written[source].items():
            if at <= base:
                continue
            same = (key in theirs) == (key in ours) and (
                key not in theirs or (theirs[key] == ours[key] and type(theirs[key]) is type(ours[key]))
            )
            if same:
                continue
            changes.append(key)
            if self.written[into].get(key, 0) > base:
                conflicts.append(key)
        if fail and conflicts:
            with pytest.raises(Conflict):
                self.vault.merge(source, into, "fail_on_conflict")
            return
        result = self.vault.merge(source, into, "fail_on_conflict" if fail else "source_wins")
        assert result.conflicts == len(conflicts)
        assert result.added + result.changed + result.deleted == len(changes)
        for key in changes:
            if key in theirs:
                ours[key] = theirs[key]
            else:
                del ours[key]
            self.written[into][key] = self.tick()
        self.merged_at[(source, into)] = self.tick()

    @invariant()
    def branches_hold_their_model(self):
        if not hasattr(self, "vault"):
            return
        assert sorted(self.vault.branches()) == sorted(self.state)
        for name, model in self.state.items():
            assert dict(self.handle(name).items()) == model

    @invariant()
    def file_is_consistent(self):
        if hasattr(self, "vault"):
            assert self.vault.check() == []


BranchMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestBranchModel = BranchMachine.TestCase


@pytest.fixture
def clocked():
    clock = {"now": 1_000.0}
    vault = KVault(":memory:", chunk_size=64, clock=lambda: clock["now"])
    return vault, clock


def test_last_writer_wins_by_write_time_and_deletes_count_as_writes(clocked):
    vault, clock = clocked
    vault["x"] = b"base"
    vault["y"] = b"base"
    dev = vault.create_branch("dev")
    clock["now"] = 2_000
    dev["x"] = b"dev, earlier"
    vault.delete("y")
    clock["now"] = 3_000
    vault["x"] = b"main, later"
    dev["y"] = b"dev, later than the delete"
    result = vault.merge("dev", "main")
    assert result.conflicts == 2
    assert vault["x"] == b"main, later"
    assert vault["y"] == b"dev, later than the delete"


def test_a_callable_settles_each_conflict_in_the_merge_transaction(clocked):
    vault, _ = clocked
    for key in ("n", "gone", "plain"):
        vault[key] = 1
    dev = vault.create_branch("dev")
    dev["n"] = 10
    vault["n"] = 5
    dev.delete("gone")
    vault["gone"] = 2
    dev["plain"] = 3
    seen = []

    def add_up(key, theirs, ours):
        seen.append((key, theirs, ours))
        if theirs is DELETED:
            return DELETED
        return theirs + ours

    result = vault.merge("dev", strategy=add_up)
    assert sorted(seen) == [("gone", DELETED, 2), ("n", 10, 5)]
    assert (vault["n"], vault["plain"], "gone" in vault) == (15, 3, False)
    assert result.conflicts == 2 and result.changed == 1

    def broken(key, theirs, ours):
        raise RuntimeError("resolver failed")

    dev["plain"] = 4
    dev["n"] = 20
    vault["n"] = 6
    with pytest.raises(RuntimeError):
        vault.merge("dev", strategy=broken)
    # The merge was one transaction: nothing of it stayed.
    assert (vault["n"], vault["plain"]) == (6, 3)
    assert vault.check() == []


def test_bad_arguments_change_nothing(clocked):
    vault, _ = clocked
    vault["k"] = b"v"
    for bad in ("", " dev", "a\nb", "x" * 129):
        with pytest.raises(InvalidArgument):
            vault.create_branch(bad)
    with pytest.raises(TypeError):
        vault.create_branch(5)
    with pytest.raises(InvalidArgument):
        vault.branch("missing")
    with pytest.raises(InvalidArgument):
        vault.diff("main", "missing")
    vault.create_branch("dev")
    with pytest.raises(InvalidArgument):
        vault.create_branch("dev")
    with pytest.raises(InvalidArgument):
        vault.merge("dev", strategy="theirs")
    with pytest.raises(TypeError):
        vault.merge("dev", strategy=3)
    with pytest.raises(InvalidArgument):
        vault.delete_branch("main")
    with pytest.raises(InvalidArgument):
        vault.set_limits(max_bytes=1 << 20)
    assert vault.branches() == ["main", "dev"]
    assert vault.limits()["max_bytes"] is None
    assert vault.check() == []


def test_a_cache_with_a_limit_cannot_fork(tmp_path):
    vault = KVault(tmp_path / "c.db", max_bytes=1 << 20)
    with pytest.raises(InvalidArgument):
        vault.create_branch("dev")
    assert vault.branches() == ["main"]


def test_branch_handles_share_the_file_and_close_alone(tmp_path):
    vault = KVault(tmp_path / "v.db", chunk_size=64)
    vault["big"] = bytes(range(256)) * 4
    dev = vault.create_branch("dev")
    assert dev.branch_name == "dev" and vault.branch_name == "main"
    assert dev.branch_info().parent == "main"
    with vault.transaction():
        dev["t"] = b"in the transaction"
        vault["t"] = b"main too"
    with pytest.raises(RuntimeError):
        with vault.transaction():
            dev["u"] = b"rolled back"
            raise RuntimeError("abort")
    assert "u" not in dev and dev["t"] == b"in the transaction"
    with dev.open("big") as reader:
        reader.seek(256)
        assert reader.read(4) == bytes(range(4))
    dev.close()
    with pytest.raises(ClosedError):
        dev["t"]
    assert vault["t"] == b"main too"
    vault.close()
    again = KVault(tmp_path / "v.db", chunk_size=64)
    assert again.branches() == ["main", "dev"]
    assert again.branch("dev")["t"] == b"in the transaction"
    assert again.check() == []


def test_history_stays_with_main(tmp_path):
    vault = KVault(tmp_path / "h.db", history="all")
    vault["k"] = 1
    dev = vault.create_branch("dev")
    dev["k"] = 2
    vault.merge("dev")
    assert [v for _, _, v in vault.history("k")] == [2, 1]
    assert [v for _, _, v in dev.history("k")] == [2]
    with pytest.raises(InvalidArgument):
        dev.as_of(0).get("k")


def test_diff_streams_and_summarises(clocked):
    vault, _ = clocked
    vault.put_many({f"k{i:04d}": i for i in range(3000)})
    dev = vault.create_branch("dev")
    dev.put_many({f"k{i:04d}": -i for i in range(0, 3000, 3)})
    dev.put_many({f"new{i}": i for i in range(10)})
    diff = vault.diff("main", "dev")
    assert diff.summary() == {"added": 10, "removed": 0, "changed": 999}
    entries = list(diff)
    assert len(entries) == 1009 and entries == sorted(entries)
    assert ("k0003", "changed") in entries and ("k0004", "changed") not in entries


def test_a_bundle_imported_as_a_branch_shows_and_merges_its_changes(tmp_path):
    theirs = KVault(tmp_path / "theirs.db")
    theirs.put_many({"a": 1, "b": 2, "c": 3})
    out = tmp_path / "x.bundle"
    ours = KVault(tmp_path / "ours.db")
    ours.put_many({"a": 1, "b": 20, "z": 9})
    theirs.export_bundle(out)
    done = ours.import_bundle(out, as_branch="incoming")
    assert (done["added"], done["changed"], done["deleted"]) == (1, 1, 1)
    assert dict(ours.items()) == {"a": 1, "b": 20, "z": 9}
    assert set(ours.diff("main", "incoming")) == {("b", "changed"), ("c", "added"), ("z", "removed")}
    ours.merge("incoming", "main")
    assert dict(ours.items()) == {"a": 1, "b": 2, "c": 3}
    # Exporting a branch by name.
    ours.create_branch("trim").delete("c")
    summary = ours.export_bundle(tmp_path / "trim.bundle", branch="trim")
    assert summary["keys"] == 2


def test_a_bad_bundle_leaves_no_branch(tmp_path):
    from ambervault import BundleError

    ours = KVault(tmp_path / "ours.db")
    bogus = tmp_path / "bogus.bundle"
    bogus.write_bytes(b"not a bundle")
    with pytest.raises(BundleError):
        ours.import_bundle(bogus, as_branch="incoming")
    assert ours.branches() == ["main"]


def test_a_branch_handle_reopens_on_its_branch(tmp_path):
    import pickle

    from ambervault import KeyDataset

    path = tmp_path / "v.db"
    vault = KVault(path)
    vault["k"] = b"main"
    dev = vault.create_branch("dev")
    dev["k"] = b"dev"
    # Pickled (as multiprocessing and data loaders do) it opens the same branch, not main.
    assert pickle.loads(pickle.dumps(dev))["k"] == b"dev"
    assert pickle.loads(pickle.dumps(vault))["k"] == b"main"
    assert pickle.loads(pickle.dumps(KeyDataset(dev, ["k"])))[0] == b"dev"
    with KVault(path, branch="dev") as opened:
        assert (opened["k"], opened.branch_name) == (b"dev", "dev")
    with pytest.raises(InvalidArgument):
        KVault(path, branch="missing")
    with pytest.raises(TypeError):
        KVault(path, branch=3)
    assert vault["k"] == b"main"
