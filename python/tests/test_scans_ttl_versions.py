"""Ordered range scans against a sorted-dict model, TTL with an injected clock on every read
path, versions and compare-and-swap (including a 4-process race on one counter)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ambervault import Conflict, InvalidArgument, KVault, NotFound

byte_keys = st.binary(max_size=4).map(lambda b: b.replace(b"\x02", b"\xff"))


@settings(max_examples=60, deadline=None)
@given(
    keys=st.sets(byte_keys, max_size=40),
    prefix=st.none() | st.binary(max_size=2),
    start=st.none() | byte_keys,
    end=st.none() | byte_keys,
    limit=st.none() | st.integers(0, 10),
    reverse=st.booleans(),
)
def test_range_scans_match_a_sorted_model(keys, prefix, start, end, limit, reverse):
    with KVault(":memory:") as vault:
        vault.put_many([(k, k + b"!") for k in keys])
        model = sorted(
            k
            for k in keys
            if (prefix is None or k.startswith(prefix))
            and (start is None or k >= start)
            and (end is None or k < end)
        )
        if reverse:
            model.reverse()
        if limit is not None:
            model = model[:limit]
        got = list(vault.keys(prefix=prefix, start=start, end=end, limit=limit, reverse=reverse))
        assert got == model
        assert [
            k for k, _ in vault.items(prefix=prefix, start=start, end=end, limit=limit, reverse=reverse)
        ] == model
        assert len(vault.keys(prefix=prefix, start=start, end=end, limit=limit)) == len(model)


def test_scans_page_through_many_keys_in_both_directions(tmp_path):
    with KVault(tmp_path / "s.db") as vault:
        vault.put_many([(f"{i:06}", b"") for i in range(5000)])
        assert list(vault.keys(start="001000", end="004000")) == [f"{i:06}" for i in range(1000, 4000)]
        assert list(vault.keys(start="001000", end="004000", reverse=True)) == [
            f"{i:06}" for i in reversed(range(1000, 4000))
        ]
        assert list(vault.keys(prefix="0049", reverse=True, limit=3)) == ["004999", "004998", "004997"]


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_ttl_hides_expired_keys_from_every_read_path(tmp_path):
    clock = Clock()
    vault = KVault(tmp_path / "t.db", chunk_size=64, clock=clock)
    vault.put("short", b"s", ttl=10)
    vault.put_file("big", io.BytesIO(b"b" * 500), ttl=10)
    vault.put("long", b"l", ttl=100)
    vault["forever"] = b"f"
    assert vault.expires_at("short") == pytest.approx(clock.now + 10)
    assert vault.expires_at("forever") is None
    clock.now += 11
    for key in ("short", "big"):
        assert vault.get(key) is None
        assert key not in vault
        with pytest.raises(NotFound):
            vault[key]
        with pytest.raises(NotFound):
            vault.open(key)
        with pytest.raises(NotFound):
            vault.get_to_file(key, io.BytesIO())
        with pytest.raises(NotFound):
            vault.expires_at(key)
    assert len(vault) == 2
    assert sorted(vault) == ["forever", "long"]
    assert sorted(vault.keys(prefix="")) == ["forever", "long"]
    assert vault.get_many(["short", "long"]) == [None, b"l"]
    assert vault.touch("short", 5) is False
    assert vault.touch("long", 1000) is True
    clock.now += 200
    assert vault["long"] == b"l"
    assert vault.touch("long", None) is True and vault.expires_at("long") is None
    assert vault.prune() == 2  # short and big: invisible already, now deleted
    assert vault.stats()["chunks"] == 0 and vault.check() == []
    vault.put("short", b"again")  # writing over an expired key starts it afresh
    assert vault.version("short") == 1
    vault.close()


def test_default_ttl_and_cached_writes_expire_too(tmp_path):
    clock = Clock()
    with KVault(tmp_path / "d.db", default_ttl=5, clock=clock) as vault:
        vault["a"] = b"1"
        vault.put_many({"b": b"2"})
        vault.put("c", b"3", ttl=60)
        vault.enable_cache()
        vault["cached"] = b"4"
        clock.now += 6
        assert vault.get("cached") is None and "cached" not in vault
        assert sorted(vault) == ["c"]
        vault.disable_cache()
    with pytest.raises(InvalidArgument):
        KVault(":memory:", default_ttl=0)
    with pytest.raises(TypeError):
        KVault(":memory:").put("k", b"v", ttl="soon")


def test_versions_and_conditional_writes(tmp_path):
    with KVault(tmp_path / "v.db", chunk_size=64) as vault:
        assert vault.version("k") is None
        vault.put("k", b"1", if_absent=True)
        with pytest.raises(Conflict, match="exists"):
            vault.put("k", b"2", if_absent=True)
        vault.put("k", b"x" * 300, if_version=1)  # chunked value: checked at the switch
        with pytest.raises(Conflict, match="expected version 1, found version 2"):
            vault.put("k", b"3", if_version=1)
        with pytest.raises(Conflict, match="does not exist"):
            vault.put("missing", b"3", if_version=1)
        with pytest.raises(InvalidArgument):
            vault.put("k", b"3", if_version=2, if_absent=True)
        assert vault["k"] == b"x" * 300 and vault.version("k") == 2
        assert vault.stats()["pending_uploads"] == 0 and vault.check() == []
        vault.enable_cache()
        vault["k"] = b"cached"
        assert vault.version("k") == 3  # cached writes count once flushed
        vault.disable_cache()


INCREMENTER = r"""
import sys, ambervault
vault = ambervault.KVault(sys.argv[1], retries=200, backoff_base=0.002)
wins = 0
for _ in range(int(sys.argv[2])):
    while True:
        version = vault.version("counter")
        value = int(vault["counter"])
        try:
            vault.put("counter", str(value + 1).encode(), if_version=version)
            wins += 1
            break
        except ambervault.Conflict:
            continue
print(wins)
"""


def test_four_processes_racing_compare_and_swap_lose_no_increment(tmp_path):
    path = tmp_path / "counter.db"
    with KVault(path) as vault:
        vault["counter"] = b"0"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INCREMENTER, str(path), "50"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    wins = 0
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        wins += int(out)
    with KVault(path) as vault:
        assert wins == 200
        assert int(vault["counter"]) == 200
        assert vault.version("counter") == 201
