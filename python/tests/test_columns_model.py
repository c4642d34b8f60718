"""Model-based test: random operation sequences on a column (appends, extends, slices with
steps, assignment, deletion, insertion, pops, the cache, reopening) behave like a list, for each
dtype family."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ambervault import ColumnVault

FAMILIES = {
    "i64": st.integers(-(2**63), 2**63 - 1),
    "u8": st.integers(0, 255),
    "f64": st.floats(allow_nan=False),
    "bool": st.booleans(),
    "bytes:5": st.binary(max_size=5).map(lambda b: b.ljust(5, b"\x00")),
    "bytes": st.binary(max_size=200),
    "str": st.text(max_size=30),
}


def machine_for(dtype):
    values = FAMILIES[dtype]
    slices = st.builds(
        slice,
        st.none() | st.integers(-12, 12),
        st.none() | st.integers(-12, 12),
        st.none() | st.sampled_from([1, 2, 3, -1, -2]),
    )

    class ColumnMachine(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.dir = tempfile.TemporaryDirectory()
            self.path = os.path.join(self.dir.name, "m.db")
            self.cv = ColumnVault(self.path, min_chunk_bytes=32, max_chunk_bytes=256)
            self.col = self.cv.create_column("c", dtype)
            self.model = []

        @rule(v=values)
        def append(self, v):
            self.col.append(v)
            self.model.append(v)

        @rule(vs=st.lists(values, max_size=8))
        def extend(self, vs):
            self.col.extend(vs)
            self.model.extend(vs)

        @rule(s=slices)
        def read_slice(self, s):
            assert self.col[s] == self.model[s]

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def set_item(self, data):
            i = data.draw(st.integers(-len(self.model), len(self.model) - 1))
            v = data.draw(values)
            self.col[i] = v
            self.model[i] = v

        @rule(s=slices, data=st.data())
        def set_slice(self, s, data):
            n = len(self.model[s])
            vs = data.draw(st.lists(values, min_size=n, max_size=n))
            self.col[s] = vs
            self.model[s] = vs

        @rule(s=slices)
        def del_slice(self, s):
            del self.col[s]
            del self.model[s]

        @rule(i=st.integers(-15, 15), v=values)
        def insert(self, i, v):
            self.col.insert(i, v)
            self.model.insert(i, v)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def pop(self, data):
            i = data.draw(st.integers(-len(self.model), len(self.model) - 1))
            assert self.col.pop(i) == self.model.pop(i)

        @rule()
        def toggle_cache(self):
            if self.cv._cache is None:
                self.cv.enable_cache(cap_bytes=300, flush_threshold=100)
            else:
                self.cv.disable_cache()

        @rule()
        def reopen(self):
            self.cv.close()
            self.cv = ColumnVault(self.path)
            self.col = self.cv["c"]

        @invariant()
        def same_as_model(self):
            if hasattr(self, "col"):
                assert len(self.col) == len(self.model)
                assert list(self.col) == self.model

        def teardown(self):
            if hasattr(self, "cv"):
                self.cv.close()
                self.dir.cleanup()

    return ColumnMachine


@pytest.mark.parametrize("dtype", FAMILIES)
def test_column_behaves_like_a_list(dtype):
    machine = machine_for(dtype)
    machine.TestCase.settings = settings(suppress_health_check=[HealthCheck.too_slow])
    machine.TestCase("runTest").runTest()
