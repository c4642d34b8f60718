"""Content deduplication: identical chunks are stored once and reference-counted; accounting
matches a model under random puts, overwrites, streams and deletes; a crash never leaves a
reference without its content."""

from __future__ import annotations

import hashlib
import io

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ambervault import KVault

CHUNK = 64
BLOCKS = [bytes([i]) * CHUNK for i in range(6)]  # a small alphabet of chunk contents

values = st.one_of(
    st.binary(max_size=CHUNK),  # inline: not deduplicated
    st.lists(st.sampled_from(BLOCKS), min_size=2, max_size=6).map(b"".join),
    st.tuples(
        st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4), st.binary(min_size=1, max_size=63)
    ).map(lambda t: b"".join(t[0]) + t[1]),
)


class DedupMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.vault = KVault(":memory:", chunk_size=CHUNK)
        self.model: dict = {}

    @rule(key=st.sampled_from("abcdef"), value=values)
    def put(self, key, value):
        self.vault[key] = value
        self.model[key] = value

    @rule(key=st.sampled_from("abcdef"), value=values)
    def stream(self, key, value):
        self.vault.put_file(key, io.BytesIO(value))
        self.model[key] = value

    @rule(key=st.sampled_from("abcdef"))
    def delete(self, key):
        assert self.vault.delete(key) == (key in self.model)
        self.model.pop(key, None)

    @invariant()
    def accounting_matches_the_model(self):
        chunked = [v for v in self.model.values() if len(v) > CHUNK]
        pieces = [v[i : i + CHUNK] for v in chunked for i in range(0, len(v), CHUNK)]
        stats = self.vault.stats()
        assert stats["chunks"] == len(pieces)
        assert stats["unique_chunks"] == len(set(pieces))
        inline = sum(len(v) for v in self.model.values() if len(v) <= CHUNK)
        assert stats["stored_bytes"] == inline + sum(len(p) for p in set(pieces))
        assert stats["logical_bytes"] == sum(len(v) for v in self.model.values())
        for key, value in self.model.items():
            assert self.vault[key] == value

    def teardown(self):
        assert self.vault.check() == []
        self.vault.close()


TestDedup = DedupMachine.TestCase
TestDedup.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)


def test_repeated_media_costs_its_unique_content(tmp_path):
    with KVault(tmp_path / "media.db", chunk_size=1 << 16) as vault:
        # 1 MiB made of 16 distinct 64 KiB chunks.
        clip = b"".join(hashlib.sha256(bytes([i])).digest() * 2048 for i in range(16))
        for i in range(20):
            vault[f"copy{i}"] = clip
        stats = vault.stats()
        assert stats["logical_bytes"] == 20 * len(clip)
        assert stats["stored_bytes"] == len(clip)
        assert stats["bytes_ratio"] == 20.0
        for i in range(19):
            del vault[f"copy{i}"]
        assert vault["copy19"] == clip
        assert vault.stats()["stored_bytes"] == len(clip)
        del vault["copy19"]
        assert vault.stats()["stored_bytes"] == 0
        assert vault.check() == []
