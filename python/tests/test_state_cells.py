"""State cells: state_init / state_set / state_cas / state_get return the versions the writes
made, against a model of (value, version) per key; a refused compare-and-swap returns None and
changes nothing; two processes incrementing one cell lose no update; bad input is refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from ambervault import InvalidArgument, KVault, NotFound

KEYS = st.sampled_from(["a", "b", ("t", 1)])
VALUES = st.none() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=3)


class CellMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.kv = KVault(":memory:")
        self.model = {}  # key -> (value, version)

    def teardown(self):
        self.kv.close()

    @rule(key=KEYS, value=VALUES)
    def init(self, key, value):
        if key not in self.model:
            self.model[key] = (value, 1)
        assert self.kv.state_init(key, value) == self.model[key][1]

    @rule(key=KEYS, value=VALUES)
    def set(self, key, value):
        version = self.model[key][1] + 1 if key in self.model else 1
        self.model[key] = (value, version)
        assert self.kv.state_set(key, value) == version

    @rule(key=KEYS, value=VALUES, expected=st.none() | st.integers(1, 6))
    def cas(self, key, value, expected):
        current = self.model.get(key, (None, None))[1]
        got = self.kv.state_cas(key, value, expected)
        if expected == current:
            self.model[key] = (value, 1 if current is None else current + 1)
            assert got == self.model[key][1]
        else:
            assert got is None

    @rule(key=KEYS)
    def delete(self, key):
        assert self.kv.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @rule(key=KEYS)
    def get(self, key):
        if key in self.model:
            assert self.kv.state_get(key) == self.model[key]
        else:
            with pytest.raises(NotFound):
                self.kv.state_get(key)
            assert self.kv.state_get(key, "dflt") == ("dflt", 0)


TestCellModel = CellMachine.TestCase


def test_a_refused_swap_changes_nothing():
    kv = KVault(":memory:")
    assert kv.state_set("mode", "idle") == 1
    assert kv.state_cas("mode", "busy", 7) is None
    assert kv.state_cas("mode", "busy", None) is None  # None expects the key absent
    assert kv.state_get("mode") == ("idle", 1)
    assert kv.state_cas("mode", "busy", 1) == 2
    assert kv.state_get("mode") == ("busy", 2)


def test_bad_input_is_refused_and_changes_nothing():
    kv = KVault(":memory:")
    kv.state_set("k", 1)
    for error, call in [
        (TypeError, lambda: kv.state_cas("k", 2, "1")),
        (TypeError, lambda: kv.state_cas("k", 2, True)),
        (TypeError, lambda: kv.state_cas("k", 2, 1.0)),
        (InvalidArgument, lambda: kv.state_cas("k", 2, 0)),
        (InvalidArgument, lambda: kv.state_cas("k", 2, -1)),
        (TypeError, lambda: kv.state_set("k", object())),
        (TypeError, lambda: kv.state_init("new", object())),
        (TypeError, lambda: kv.state_set(3.5, 1)),
    ]:
        with pytest.raises(error):
            call()
    assert kv.state_get("k") == (1, 1) and "new" not in kv and len(kv) == 1


def test_cells_with_a_write_back_cache():
    kv = KVault(":memory:")
    with kv.cache():
        kv["k"] = "cached"  # held in the cache: state_set must see it
        assert kv.state_set("k", "v2") == 2
        assert kv.state_get("k") == ("v2", 2)
        assert kv.state_cas("k", "v3", 2) == 3
    assert kv.state_get("k") == ("v3", 3)


def test_two_processes_increment_one_cell(db_path):
    with KVault(db_path) as kv:
        assert kv.state_init("counter", 0) == 1
    code = textwrap.dedent(
        """
        import sys
        from ambervault import KVault
        kv = KVault(sys.argv[1], retries=50)
        for _ in range(100):
            while True:
                value, version = kv.state_get("counter")
                if kv.state_cas("counter", value + 1, version) is not None:
                    break
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db_path)], stderr=subprocess.PIPE) for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with KVault(db_path) as kv:
        assert kv.state_get("counter") == (200, 201)
