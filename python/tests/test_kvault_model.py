"""Model-based test: random sequences of vault operations (including chunked values, streams,
batches, the cache and reopening the file) must behave exactly like a plain dict."""

from __future__ import annotations

import io
import os
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ambervault import KVault

keys = st.one_of(
    st.text(max_size=6),
    st.binary(max_size=6),
    st.sampled_from(["a", b"a", "ab", b"\xff", b"\xff\xff", ""]),
)
values = st.one_of(st.binary(max_size=40), st.binary(min_size=90, max_size=400))


def raw(key):
    return key.encode() if isinstance(key, str) else key


class VaultMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "m.db")
        self.vault = KVault(self.path, chunk_size=64)
        self.model: dict = {}  # raw key -> (key as last written, value)

    @rule(key=keys, value=values)
    def put(self, key, value):
        self.vault[key] = value
        self.model[raw(key)] = (key, value)

    @rule(key=keys, value=values)
    def stream(self, key, value):
        self.vault.put_file(key, io.BytesIO(value))
        self.model[raw(key)] = (key, value)

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=5))
    def put_many(self, pairs):
        self.vault.put_many(pairs)
        for key, value in pairs:
            self.model[raw(key)] = (key, value)

    @rule(key=keys)
    def delete(self, key):
        assert self.vault.delete(key) == (raw(key) in self.model)
        self.model.pop(raw(key), None)

    @rule(key=keys)
    def get(self, key):
        expected = self.model.get(raw(key))
        assert self.vault.get(key) == (None if expected is None else expected[1])

    @rule(prefix=st.binary(max_size=2))
    def scan_prefix(self, prefix):
        expected = sorted(k for k in self.model if k.startswith(prefix))
        assert [raw(k) for k in self.vault.keys(prefix=prefix)] == expected

    @rule()
    def toggle_cache(self):
        if self.vault._cache is None:
            self.vault.enable_cache(cap_bytes=500, flush_threshold=300)
        else:
            self.vault.disable_cache()

    @rule()
    def reopen(self):
        self.vault.close()
        self.vault = KVault(self.path, chunk_size=64)

    @invariant()
    def same_as_model(self):
        assert len(self.vault) == len(self.model)
        assert [(raw(k), k, v) for k, v in self.vault.items()] == [
            (r, *self.model[r]) for r in sorted(self.model)
        ]

    def teardown(self):
        self.vault.close()
        self.dir.cleanup()


TestVaultModel = VaultMachine.TestCase
TestVaultModel.settings = settings(suppress_health_check=[HealthCheck.too_slow])
