"""SIGKILL while branches are forked, written, merged and deleted (``harness.KILLS`` kill
points): after reopening, ``check()`` is clean and the branches and their keys are exactly the
state after the acknowledged operations (or after the one in flight, which may have landed)."""

from __future__ import annotations

import hashlib
import random

from harness import KILLS, run_until_killed

from ambervault import KVault

CHUNK = 4096
KEYS = 6


def val(i: int) -> bytes:
    # Inline and chunked sizes.
    return hashlib.shake_256(b"%d" % i).digest(50 + (i * 3571) % 12_000)


def start(kv: KVault) -> None:
    if len(kv) == 0:
        with kv.transaction():
            for k in range(KEYS):
                kv[f"k{k}"] = val(1000 + k)


def apply(op: int, kv: KVault) -> None:
    """Operation ``op``: a fork, a transaction of branch writes, a merge or a branch delete."""
    j, step = divmod(op, 4)
    name = f"b{j}"
    if step == 0:
        kv.create_branch(name)
    elif step == 1:
        branch = kv.branch(name)
        with kv.transaction():
            branch[f"k{j % KEYS}"] = val(j)
            branch.delete(f"k{(j + 1) % KEYS}")
            branch[f"new{j}"] = val(j + 7)
    elif step == 2:
        kv.merge(name, "main", "source_wins")
    else:
        kv.delete_branch(name)


def model(ops: int) -> dict:
    """Branch name -> its keys and values after ``ops`` operations."""
    state = {"main": {f"k{k}": val(1000 + k) for k in range(KEYS)}}
    for op in range(ops):
        j, step = divmod(op, 4)
        name = f"b{j}"
        if step == 0:
            state[name] = dict(state["main"])
        elif step == 1:
            branch = state[name]
            branch[f"k{j % KEYS}"] = val(j)
            branch.pop(f"k{(j + 1) % KEYS}", None)
            branch[f"new{j}"] = val(j + 7)
        elif step == 2:
            state["main"] = dict(state[name])
        else:
            del state[name]
    return state


def work(path, ack):
    kv = KVault(path, chunk_size=CHUNK)
    start(kv)
    op = 0
    while True:
        apply(op, kv)
        ack(op + 1)
        op += 1


def observed(kv: KVault) -> dict:
    return {name: dict(kv.branch(name).items()) for name in kv.branches()}


def test_kill_while_forking_merging_and_deleting_branches(tmp_path):
    rng = random.Random("branches-seed")
    for k in range(KILLS):
        path = tmp_path / f"{k}.db"
        acked = run_until_killed(lambda ack, p=path: work(p, ack), rng)
        with KVault(path, chunk_size=CHUNK) as kv:
            assert kv.check() == []
            got = observed(kv)
            assert got in (model(acked), model(acked + 1)), (acked, sorted(got))
