"""Simulated power loss: run a workload in a child process under the recording VFS
(``AMBERVAULT_TEST_POWERLOSS_LOG``, test builds only), then rebuild the vault's files as a power
cut after any recorded event would have left them, open each rebuilt file with the normal VFS and
compare it with a model of the workload.

A power cut keeps every write of a file followed by a completed sync of that file; of the later
("pending") writes it may keep none, all, any subset in any order, or part of one. For each cut
point :func:`power_cuts` yields the file images under four such fates:

- ``lost``: no pending write survives;
- ``kept``: all of them do (what a SIGKILL leaves: the kernel still writes them);
- ``torn``: all but the last, which survives only as a prefix (a multiple of 512 bytes);
- ``subset``: a random subset (reordered writes: any of them may have reached the disk).

The workload (:func:`workload`) is deterministic for its seed: key-value puts of inline and
chunked values (repeated contents, so chunks are deduplicated), streamed writes, deletes,
expiring keys and ``prune()``, column appends and extends, explicit transactions spanning both,
and checkpoints, while the vault's own background checkpoint thread and the WAL-batching VFS
run as in production. After operation ``n`` is acknowledged the child logs ``powerloss_mark(n)``.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

KEYS = [f"k{i}" for i in range(8)]
# "bulk" and "bulk_extend" operations commit hundreds of pages at once, so the vault's
# bulk-commit path (which waits for the background checkpoint) runs too.
BULK_KEYS = 60
BULK_ELEMENTS = 40_000
CHUNK = 4096
FATES = ("lost", "kept", "torn", "subset")


def value(i: int) -> bytes:
    """Inline (< 4 KiB) and chunked values; every fifth repeats an earlier content."""
    seed = i - i % 5 if i % 5 == 4 else i
    size = 30 + (seed * 2654435761) % 20_000
    return hashlib.shake_256(b"%d" % seed).digest(size)


State = Tuple[Dict[str, bytes], Dict[str, List[float]]]


def plan(seed: int, ops: int) -> List[Tuple[str, Any]]:
    """The workload's operations."""
    rng = random.Random(seed)
    kinds = ["put", "put", "put", "stream", "delete", "txn", "append", "extend", "checkpoint", "ttl", "prune"]
    kinds += ["bulk", "bulk_extend"]
    return [(rng.choice(kinds), rng.randrange(1 << 30)) for _ in range(ops)]


def apply_model(state: State, op: Tuple[str, Any], i: int) -> None:
    """What operation ``i`` does to the model (expiring keys are never visible: the checker's
    clock is past every expiry)."""
    kv, cols = state
    kind, r = op
    key = KEYS[r % len(KEYS)]
    if kind in ("put", "stream"):
        kv[key] = value(i)
    elif kind == "delete":
        kv.pop(key, None)
    elif kind == "ttl":
        kv.pop(key, None)
    elif kind == "txn":
        kv[key] = value(i)
        kv.pop(KEYS[(r + 1) % len(KEYS)], None)
        cols.setdefault("loss", []).append(float(i))
    elif kind == "append":
        cols.setdefault("loss", []).append(float(i))
    elif kind == "extend":
        cols.setdefault("steps", []).extend(float(i * 100 + j) for j in range(50))
    elif kind == "bulk":
        for j in range(BULK_KEYS):
            kv[f"bulk{j}"] = value(i + j)[:3000]
    elif kind == "bulk_extend":
        cols.setdefault("bulk", []).extend(float(i + j) for j in range(BULK_ELEMENTS))


def models(seed: int, ops: int) -> List[State]:
    """The model after 0, 1, ..., ``ops`` operations."""
    state: State = ({}, {})
    out = [({}, {})]
    for i, op in enumerate(plan(seed, ops)):
        apply_model(state, op, i)
        out.append((dict(state[0]), {k: list(v) for k, v in state[1].items()}))
    return out


def workload(path: str, seed: int, ops: int, synchronous: str) -> None:
    """Runs in the child: the operations, each acknowledged with a mark."""
    import ambervault
    from ambervault._ambervault import powerloss_mark

    clock = {"now": 1_000_000.0}
    kv = ambervault.KVault(path, chunk_size=CHUNK, synchronous=synchronous, clock=lambda: clock["now"])
    cv = ambervault.ColumnVault(kv)
    for i, (kind, r) in enumerate(plan(seed, ops)):
        clock["now"] += 1
        key = KEYS[r % len(KEYS)]
        if kind == "put":
            kv[key] = value(i)
        elif kind == "stream":
            with kv.open(key, "wb") as w:
                data = value(i)
                for at in range(0, len(data), 3000):
                    w.write(data[at : at + 3000])
        elif kind == "delete":
            kv.delete(key)
        elif kind == "ttl":
            kv.put(key, value(i), ttl=2)
        elif kind == "prune":
            clock["now"] += 5
            kv.prune()
        elif kind == "txn":
            with kv.transaction():
                kv[key] = value(i)
                kv.delete(KEYS[(r + 1) % len(KEYS)])
                cv.ensure("loss", "f64").append(float(i))
        elif kind == "append":
            cv.ensure("loss", "f64").append(float(i))
        elif kind == "extend":
            cv.ensure("steps", "f64").extend([float(i * 100 + j) for j in range(50)])
        elif kind == "checkpoint":
            kv.checkpoint()
        elif kind == "bulk":
            kv.put_many({f"bulk{j}": value(i + j)[:3000] for j in range(BULK_KEYS)})
        elif kind == "bulk_extend":
            cv.ensure("bulk", "f64").extend([float(i + j) for j in range(BULK_ELEMENTS)])
        if not powerloss_mark(i + 1):
            raise SystemExit("the power-loss recorder is not active (needs a test-hooks build)")
    kv.close()


def record(tmp: Path, seed: int, ops: int, synchronous: str) -> Tuple[Path, bytes]:
    """Runs the workload in a child process; returns the vault's path and the log's bytes."""
    path = tmp / "vault.db"
    log = tmp / "events.log"
    env = dict(os.environ, AMBERVAULT_TEST_POWERLOSS_LOG=str(log))
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import powerloss; "
        f"powerloss.workload({str(path)!r}, {seed}, {ops}, {synchronous!r})"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    return path, log.read_bytes()


@dataclass
class Event:
    """One log record."""

    kind: str
    path: str = ""
    offset: int = 0
    data: bytes = b""
    mark: int = 0


def parse(log: bytes) -> List[Event]:
    """The log's records, with file ids resolved to paths."""
    names: Dict[int, str] = {}
    events: List[Event] = []
    at = 0
    while at < len(log):
        tag = chr(log[at])
        at += 1
        if tag == "O":
            fid, n = struct.unpack_from("<II", log, at)
            at += 8
            names[fid] = log[at : at + n].decode()
            at += n
        elif tag == "W":
            fid, offset, n = struct.unpack_from("<IqI", log, at)
            at += 16
            events.append(Event("write", names[fid], offset, log[at : at + n]))
            at += n
        elif tag == "T":
            fid, size = struct.unpack_from("<Iq", log, at)
            at += 12
            events.append(Event("truncate", names[fid], size))
        elif tag == "S":
            (fid,) = struct.unpack_from("<I", log, at)
            at += 4
            events.append(Event("sync", names[fid]))
        elif tag == "D":
            (n,) = struct.unpack_from("<I", log, at)
            at += 4
            events.append(Event("delete", log[at : at + n].decode()))
            at += n
        elif tag == "R":
            # A rename made durable at once (the creation of an encrypted file): the new name
            # takes the old one's contents, written and pending.
            (n,) = struct.unpack_from("<I", log, at)
            source = log[at + 4 : at + 4 + n].decode()
            at += 4 + n
            (n,) = struct.unpack_from("<I", log, at)
            events.append(Event("rename", log[at + 4 : at + 4 + n].decode(), data=source.encode()))
            at += 4 + n
        elif tag == "M":
            (mark,) = struct.unpack_from("<Q", log, at)
            at += 8
            events.append(Event("mark", mark=mark))
        else:
            raise ValueError(f"unknown record {tag!r} at {at - 1}")
    return events


def _apply(image: Optional[bytearray], event: Event, torn_to: Optional[int] = None) -> bytearray:
    image = bytearray() if image is None else image
    if event.kind == "write":
        data = event.data if torn_to is None else event.data[:torn_to]
        end = event.offset + len(data)
        if len(image) < event.offset:
            image.extend(bytes(event.offset - len(image)))
        image[event.offset : end] = data
    elif event.kind == "truncate":
        del image[event.offset :]
    return image


@dataclass
class Cut:
    """The files as a power cut after event ``index`` left them under ``fate``."""

    index: int
    fate: str
    files: Dict[str, bytes]
    acked: int
    durable_acked: int = field(default=0)
    #: Writes to the database file itself were pending: the cut fell inside a checkpoint.
    in_checkpoint: bool = field(default=False)


def power_cuts(events: List[Event], cuts: List[int], rng: random.Random) -> Iterator[Cut]:
    """Replays ``events``; at each index in ``cuts`` (sorted) yields the files under each fate.
    ``acked`` is the number of operations acknowledged before the cut; ``durable_acked`` the
    number acknowledged before the last sync of the WAL (with ``synchronous=NORMAL`` only
    those are promised)."""
    durable: Dict[str, Optional[bytearray]] = {}
    pending: Dict[str, List[Event]] = {}
    acked = 0
    durable_acked = 0
    wanted = iter(sorted(set(cuts)))
    next_cut = next(wanted, None)
    for index, event in enumerate(events):
        if event.kind == "mark":
            acked = event.mark
        elif event.kind == "sync":
            image = durable.get(event.path)
            for p in pending.pop(event.path, []):
                image = _apply(image, p)
            durable[event.path] = image if image is not None else bytearray()
            if event.path.endswith("-wal"):
                durable_acked = acked
        elif event.kind == "delete":
            durable.pop(event.path, None)
            pending.pop(event.path, None)
        elif event.kind == "rename":
            source = event.data.decode()
            durable[event.path] = durable.pop(source, None)
            pending[event.path] = pending.pop(source, [])
        else:
            pending.setdefault(event.path, []).append(event)
            durable.setdefault(event.path, None)
        while next_cut is not None and next_cut <= index:
            for fate in FATES:
                files: Dict[str, bytes] = {}
                for path in set(durable) | set(pending):
                    image = bytearray(durable.get(path) or b"")
                    waiting = pending.get(path, [])
                    if fate == "kept":
                        chosen = [(e, None) for e in waiting]
                    elif fate == "torn" and waiting:
                        last = waiting[-1]
                        cut_at = (rng.randrange(len(last.data) + 1) // 512) * 512 if last.data else None
                        chosen = [(e, None) for e in waiting[:-1]] + [(last, cut_at)]
                    elif fate == "subset":
                        chosen = [(e, None) for e in waiting if rng.random() < 0.5]
                    else:
                        chosen = []
                    for e, torn in chosen:
                        image = _apply(image, e, torn)
                    if durable.get(path) is not None or chosen:
                        files[path] = bytes(image)
                in_checkpoint = any(p.endswith(".db") and w for p, w in pending.items())
                yield Cut(index, fate, files, acked, durable_acked, in_checkpoint)
            next_cut = next(wanted, None)


def observe(directory: Path, files: Dict[str, bytes], vault_path: Path) -> Tuple[State, List[str], str]:
    """Writes the rebuilt files into ``directory`` (database, WAL and rollback journal; the
    shared-memory index is never durable: SQLite rebuilds it), opens the vault with the normal
    VFS and a clock past every expiry, and returns its state, ``check()`` and SQLite's
    integrity check."""
    import sqlite3

    import ambervault

    for name in os.listdir(directory):
        os.remove(directory / name)
    target = directory / "vault.db"
    for path, data in files.items():
        suffix = path[len(str(vault_path)) :]
        if suffix in ("", "-wal", "-journal"):
            (directory / ("vault.db" + suffix)).write_bytes(data)
    if not target.exists():
        return ({}, {}), [], "ok"
    kv = ambervault.KVault(target, chunk_size=CHUNK, clock=lambda: 10_000_000_000.0)
    try:
        problems = kv.check()
        items = dict(kv.items())
        cv = ambervault.ColumnVault(kv)
        cols = {name: list(cv[name]) for name, _, _ in cv.list_columns()}
        cols = {k: v for k, v in cols.items() if v}
    finally:
        kv.close()
    if os.environ.get("AMBERVAULT_TEST_KEY"):
        # An encrypted file: the stdlib sqlite3 cannot read it. check() above already ran
        # SQLite's integrity check (through the key) and reported any problem it found.
        return (items, cols), problems, "ok"
    conn = sqlite3.connect(target)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return (items, cols), problems, integrity
