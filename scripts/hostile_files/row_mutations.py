"""Damage to a vault file's logical content, made with the standard library's ``sqlite3`` on a
copy: rows whose fields contradict each other or the format (sizes, chunk sizes, blob ids,
chunk and content rows, reference counts, encodings, typed-value bytes, cache policy, history,
format markers, column metadata, column chunk rows).

Each mutation is registered with ``protected``: whether the file keeps something the change
contradicts (a hash, a count, a size, a known set of codes), so that ``check()`` could notice
it. A mutation returns a description of what it changed, or ``None`` when the file has nothing
it applies to (the campaign then picks another). The vault's triggers are dropped while a
mutation runs and re-created after, so the damage is exactly what the mutation wrote.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .mutation import Applied

I64_MAX = (1 << 63) - 1
#: Values a damaged integer field takes: signs, zero, limits and the 2^31/2^32 edges.
EXTREMES = (-1, 0, -(1 << 31), (1 << 31) - 1, 1 << 31, 1 << 32, 1 << 40, 1 << 62, I64_MAX, -I64_MAX - 1)


@dataclass(frozen=True)
class Target:
    """What a mutation may touch in a seed: its key-value tables and whether it has columns."""

    kv_tables: Tuple[str, ...]
    has_columns: bool


Mutation = Callable[[sqlite3.Connection, Target, random.Random], Optional[str]]
_REGISTRY: Dict[str, Tuple[Mutation, bool]] = {}


def _mutation(name: str, protected: bool) -> Callable[[Mutation], Mutation]:
    def register(func: Mutation) -> Mutation:
        _REGISTRY[name] = (func, protected)
        return func

    return register


def row_mutation_names(target: Target) -> List[str]:
    """Names of the row mutations that can apply to ``target`` (column ones need columns)."""
    return [n for n in _REGISTRY if target.has_columns or not n.startswith("col:")]


def is_protected(name: str) -> bool:
    """Whether the row mutation ``name`` contradicts something the file stores."""
    return _REGISTRY[name][1]


@contextlib.contextmanager
def _triggers_dropped(conn: sqlite3.Connection) -> Iterator[None]:
    triggers = conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _, _ in triggers:
        conn.execute(f"DROP TRIGGER {_q(name)}")
    yield
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for _, table, sql in triggers:
        if table in tables:  # a dropped table's triggers go with it
            conn.execute(sql)


def apply_row_mutation(path: str, target: Target, name: str, rng: random.Random) -> Optional[Applied]:
    """Apply the row mutation ``name`` to the file at ``path`` (in place, one transaction);
    ``None`` if it does not apply to this file."""
    func, protected = _REGISTRY[name]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            with _triggers_dropped(conn):
                detail = func(conn, target, rng)
        except sqlite3.Error:
            detail = None  # e.g. a table an earlier mutation dropped: does not apply
        conn.execute("COMMIT" if detail is not None else "ROLLBACK")
        # Back into the main file, so byte mutations after this one see every change.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return None if detail is None else Applied(name, "", protected, detail)


# -- helpers -----------------------------------------------------------------------------------


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables_with(conn: sqlite3.Connection, target: Target, rng: random.Random, suffix: str = "") -> List[str]:
    """The target's key-value tables (or their ``suffix`` tables) that exist, in random order."""
    names = [t + suffix for t in target.kv_tables]
    existing = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = [n for n in names if n in existing]
    rng.shuffle(found)
    return found


def _pick(
    conn: sqlite3.Connection, sql: str, rng: random.Random, params: Sequence[Any] = ()
) -> Optional[Any]:
    rows = conn.execute(sql, params).fetchall()
    return rng.choice(rows) if rows else None


def _key_row(
    conn: sqlite3.Connection, target: Target, rng: random.Random, where: str
) -> Optional[Tuple[str, Tuple[Any, ...]]]:
    """A random key row (``key, size, blob_id, chunk_size, encoding, inline_data``) of any
    table matching ``where``."""
    for table in _tables_with(conn, target, rng):
        row = _pick(
            conn,
            f"SELECT key, size, blob_id, chunk_size, encoding, inline_data FROM {_q(table)} WHERE {where}",
            rng,
        )
        if row is not None:
            return table, tuple(row)
    return None


def _set_key_field(
    conn: sqlite3.Connection,
    target: Target,
    rng: random.Random,
    where: str,
    field: str,
    value: Callable[[Any], Any],
) -> Optional[str]:
    found = _key_row(conn, target, rng, where)
    if found is None:
        return None
    table, row = found
    old = conn.execute(f"SELECT {field} FROM {_q(table)} WHERE key = ?", (row[0],)).fetchone()[0]
    new = value(row)
    conn.execute(f"UPDATE {_q(table)} SET {field} = ? WHERE key = ?", (new, row[0]))
    return f"{table}[{row[0]!r}].{field}: {old!r} -> {new!r}"


_CHUNKED = "blob_id IS NOT NULL"
_INLINE = "inline_data IS NOT NULL"
_TYPED = "encoding <> 0 AND inline_data IS NOT NULL"


# -- key rows ----------------------------------------------------------------------------------


@_mutation("row:size-extreme", True)
def _size_extreme(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, "1", "size", lambda r: rng.choice(EXTREMES))


@_mutation("row:size-off-by-one", True)
def _size_off_by_one(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, "1", "size", lambda r: r[1] + rng.choice((-1, 1)))


@_mutation("row:chunk-size-extreme", True)
def _chunk_size_extreme(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, _CHUNKED, "chunk_size", lambda r: rng.choice(EXTREMES))


@_mutation("row:chunk-size-plausible", True)
def _chunk_size_plausible(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(
        conn, t, rng, _CHUNKED, "chunk_size", lambda r: rng.choice((r[3] * 2, r[3] // 2, r[3] + 1, r[3] - 1))
    )


@_mutation("row:blob-id-missing", True)
def _blob_id_missing(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, _CHUNKED, "blob_id", lambda r: r[2] + rng.randint(100, 1000))


@_mutation("row:blob-id-extreme", True)
def _blob_id_extreme(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, _CHUNKED, "blob_id", lambda r: rng.choice(EXTREMES))


@_mutation("row:blob-id-shared", True)
def _blob_id_shared(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """Two keys name the same blob (overlapping chunk ranges); the other's blob is orphaned."""
    for table in _tables_with(conn, t, rng):
        rows = conn.execute(f"SELECT key, blob_id FROM {_q(table)} WHERE {_CHUNKED}").fetchall()
        if len(rows) >= 2:
            (key, _), (_, other) = rng.sample(rows, 2)
            conn.execute(f"UPDATE {_q(table)} SET blob_id = ? WHERE key = ?", (other, key))
            return f"{table}[{key!r}].blob_id -> {other} (another key's blob)"
    return None


@_mutation("row:inline-and-blob", True)
def _inline_and_blob(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A row with both an inline value and a blob, or with neither."""
    found = _key_row(conn, t, rng, "1")
    if found is None:
        return None
    table, row = found
    if row[2] is None:
        conn.execute(f"UPDATE {_q(table)} SET blob_id = 1, chunk_size = 64 WHERE key = ?", (row[0],))
        return f"{table}[{row[0]!r}]: blob 1 added beside its inline value"
    conn.execute(f"UPDATE {_q(table)} SET blob_id = NULL, chunk_size = NULL WHERE key = ?", (row[0],))
    return f"{table}[{row[0]!r}]: blob removed, nothing stored"


@_mutation("row:inline-bytes-changed", False)
def _inline_bytes_changed(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """Same length, one byte different: no checksum covers inline values."""
    found = _key_row(conn, t, rng, f"{_INLINE} AND length(inline_data) > 0")
    if found is None:
        return None
    table, row = found
    data = bytearray(row[5])
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    conn.execute(f"UPDATE {_q(table)} SET inline_data = ? WHERE key = ?", (bytes(data), row[0]))
    return f"{table}[{row[0]!r}].inline_data byte {at} flipped"


@_mutation("row:encoding-unknown", True)
def _encoding_unknown(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, "1", "encoding", lambda r: rng.choice((7, 99, -1, 255, 1 << 40)))


@_mutation("row:encoding-switched", False)
def _encoding_switched(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(
        conn, t, rng, "1", "encoding", lambda r: rng.choice([c for c in range(7) if c != r[4]])
    )


def _set_inline(
    conn: sqlite3.Connection, t: Target, rng: random.Random, where: str, data: bytes
) -> Optional[str]:
    found = _key_row(conn, t, rng, where)
    if found is None:
        return None
    table, row = found
    conn.execute(f"UPDATE {_q(table)} SET inline_data = ?, size = ? WHERE key = ?", (data, len(data), row[0]))
    return f"{table}[{row[0]!r}] (encoding {row[4]}) := {data[:40].hex()}"


@_mutation("row:typed-garbage", False)
def _typed_garbage(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A typed value's bytes replaced by random bytes (sizes kept consistent)."""
    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    return _set_inline(conn, t, rng, _TYPED, data)


def _npy_header(shape: Tuple[int, ...], dtype: str = "<f8") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    header = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


#: Typed-value bytes that claim far more than they hold: a huge numpy shape, a MessagePack
#: array or string of 2^32 - 1 items, a deeply nested MessagePack array, a CBOR byte string of
#: 2^63 bytes, a JSON text nested 100,000 deep.
_CRAFTED: Dict[str, Tuple[int, bytes]] = {
    "npy-huge-shape": (5, _npy_header((1 << 40,)) + b"\x00" * 8),
    "npy-huge-2d": (5, _npy_header((1 << 31, 1 << 31), "<u1") + b"\x00" * 8),
    "npy-object-dtype": (5, _npy_header((2,), "|O") + b"\x00" * 16),
    "npy-scalar-shape": (6, _npy_header((3,)) + b"\x00" * 24),
    "msgpack-array32": (1, b"\xdd\xff\xff\xff\xff\x01"),
    "msgpack-str32": (1, b"\xdb\xff\xff\xff\xffabc"),
    "msgpack-deep": (1, b"\x91" * 200_000),
    "msgpack-ext-tuple-int": (1, b"\xd4\x01\x05"),
    "msgpack-ext-bigint-text": (1, b"\xc7\x03\x02abc"),
    "msgpack-ext-date-bad": (1, b"\xc7\x05\x04xxxxx"),
    "msgpack-ext-npy-bad": (1, b"\xc7\x04\x05\x93NUM"),
    "cbor-huge-bytes": (3, b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff"),
    "cbor-deep": (3, b"\x81" * 200_000),
    "json-deep": (2, b"[" * 100_000),
    "json-bad-utf8": (2, b'"\xff\xfe"'),
}


@_mutation("row:typed-crafted", False)
def _typed_crafted(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A typed value replaced by bytes that claim far more than they hold (memory bound)."""
    name = rng.choice(sorted(_CRAFTED))
    code, data = _CRAFTED[name]
    found = _key_row(conn, t, rng, _INLINE)
    if found is None:
        return None
    table, row = found
    conn.execute(
        f"UPDATE {_q(table)} SET inline_data = ?, size = ?, encoding = ? WHERE key = ?",
        (data, len(data), code, row[0]),
    )
    return f"{table}[{row[0]!r}] := {name}"


@_mutation("row:key-kind-unknown", True)
def _key_kind_unknown(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, "1", "key_kind", lambda r: rng.choice((3, 9, -1, 1 << 40)))


@_mutation("row:key-kind-switched", False)
def _key_kind_switched(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A key read as another kind: bytes as a tuple encoding, or non-UTF-8 bytes as text."""
    return _set_key_field(conn, t, rng, "1", "key_kind", lambda r: rng.choice((0, 1, 2)))


@_mutation("row:key-bytes-changed", False)
def _key_bytes_changed(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _key_row(conn, t, rng, "length(key) > 0")
    if found is None:
        return None
    table, row = found
    key = bytearray(row[0])
    key[rng.randrange(len(key))] ^= 0x20
    with contextlib.suppress(sqlite3.IntegrityError):  # landed on another key: try appending
        conn.execute(f"UPDATE {_q(table)} SET key = ? WHERE key = ?", (bytes(key), row[0]))
        return f"{table}[{row[0]!r}] renamed {bytes(key)!r}"
    conn.execute(f"UPDATE {_q(table)} SET key = key || x'ff' WHERE key = ?", (row[0],))
    return f"{table}[{row[0]!r}] renamed with a 0xff suffix"


@_mutation("row:expired", False)
def _expired(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, "1", "expires_at", lambda r: rng.choice((1, -1, 0)))


@_mutation("row:version-extreme", False)
def _version_extreme(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_key_field(conn, t, rng, "1", "version", lambda r: rng.choice(EXTREMES))


@_mutation("row:times-extreme", False)
def _times_extreme(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    field = rng.choice(("created_at", "updated_at"))
    return _set_key_field(conn, t, rng, "1", field, lambda r: rng.choice(EXTREMES))


@_mutation("row:field-wrong-type", True)
def _field_wrong_type(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A field of another SQLite type than the schema says (SQLite lets any column hold any):
    text, a float or a blob where an integer belongs, a number where the value's bytes belong."""
    fields = ("size", "chunk_size", "blob_id", "encoding", "key_kind", "expires_at", "version", "inline_data")
    field = rng.choice(fields)
    values = (7, 2.5) if field == "inline_data" else ("text", 2.5, b"\x01\x02")
    return _set_key_field(conn, t, rng, "1", field, lambda r: rng.choice(values))


# -- chunk and content rows ----------------------------------------------------------------------


def _chunk_row(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[Tuple[str, int, int]]:
    for table in _tables_with(conn, t, rng, "__chunks"):
        row = _pick(conn, f"SELECT id, cid FROM {_q(table)}", rng)
        if row is not None:
            return table, row[0], row[1]
    return None


@_mutation("row:chunk-missing", True)
def _chunk_missing(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _chunk_row(conn, t, rng)
    if found is None:
        return None
    table, cid_row, _ = found
    conn.execute(f"DELETE FROM {_q(table)} WHERE id = ?", (cid_row,))
    return f"{table} row {cid_row >> 32}:{cid_row & 0xFFFFFFFF} deleted"


@_mutation("row:chunk-extra", True)
def _chunk_extra(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """An extra chunk row after a blob's last one, or far past it (a gap)."""
    found = _chunk_row(conn, t, rng)
    if found is None:
        return None
    table, row_id, cid = found
    blob = row_id >> 32
    last = conn.execute(f"SELECT max(id) FROM {_q(table)} WHERE id >> 32 = ?", (blob,)).fetchone()[0]
    new = last + rng.choice((1, 1000, 0xFFFFFFFF - (last & 0xFFFFFFFF)))
    conn.execute(f"INSERT OR IGNORE INTO {_q(table)} (id, cid) VALUES (?, ?)", (new, cid))
    return f"{table}: extra chunk {new >> 32}:{new & 0xFFFFFFFF} -> content {cid}"


@_mutation("row:chunk-content-missing", True)
def _chunk_content_missing(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _chunk_row(conn, t, rng)
    if found is None:
        return None
    table, row_id, _ = found
    new = rng.choice((10**6, -1, 0, I64_MAX))
    conn.execute(f"UPDATE {_q(table)} SET cid = ? WHERE id = ?", (new, row_id))
    return f"{table} row {row_id}: cid -> {new} (no such content)"


@_mutation("row:chunk-content-other", True)
def _chunk_content_other(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A chunk names another existing content (of the same length when there is one)."""
    found = _chunk_row(conn, t, rng)
    if found is None:
        return None
    table, row_id, cid = found
    content = table[: -len("__chunks")] + "__content"
    length = conn.execute(f"SELECT length(data) FROM {_q(content)} WHERE cid = ?", (cid,)).fetchone()
    same = conn.execute(
        f"SELECT cid FROM {_q(content)} WHERE cid <> ? AND length(data) = ?",
        (cid, length[0] if length else -1),
    ).fetchall()
    others = same or conn.execute(f"SELECT cid FROM {_q(content)} WHERE cid <> ?", (cid,)).fetchall()
    if not others:
        return None
    new = rng.choice(others)[0]
    conn.execute(f"UPDATE {_q(table)} SET cid = ? WHERE id = ?", (new, row_id))
    return f"{table} row {row_id}: cid {cid} -> {new}"


def _content_row(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[Tuple[str, int, bytes]]:
    for table in _tables_with(conn, t, rng, "__content"):
        row = _pick(conn, f"SELECT cid, data FROM {_q(table)} WHERE length(data) > 0", rng)
        if row is not None:
            return table, row[0], row[1]
    return None


@_mutation("row:content-bytes-changed", True)
def _content_bytes_changed(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A content's bytes no longer match its stored BLAKE3 hash (same length)."""
    found = _content_row(conn, t, rng)
    if found is None:
        return None
    table, cid, data = found
    changed = bytearray(data)
    at = rng.randrange(len(changed))
    changed[at] ^= 1 << rng.randrange(8)
    conn.execute(f"UPDATE {_q(table)} SET data = ? WHERE cid = ?", (bytes(changed), cid))
    return f"{table} cid {cid}: byte {at} flipped (hash kept)"


@_mutation("row:content-length-changed", True)
def _content_length_changed(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _content_row(conn, t, rng)
    if found is None:
        return None
    table, cid, data = found
    new = rng.choice((data[:-1], data + b"\x00", b"", data * 2))
    conn.execute(f"UPDATE {_q(table)} SET data = ? WHERE cid = ?", (new, cid))
    return f"{table} cid {cid}: {len(data)} -> {len(new)} bytes"


@_mutation("row:content-hash-changed", True)
def _content_hash_changed(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _content_row(conn, t, rng)
    if found is None:
        return None
    table, cid, _ = found
    new = rng.choice((bytes(32), b"\x01", b"", bytes(rng.randrange(256) for _ in range(32))))
    with contextlib.suppress(sqlite3.IntegrityError):
        conn.execute(f"UPDATE {_q(table)} SET hash = ? WHERE cid = ?", (new, cid))
        return f"{table} cid {cid}: hash -> {new.hex()}"
    return None


@_mutation("row:refs-wrong", True)
def _refs_wrong(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _content_row(conn, t, rng)
    if found is None:
        return None
    table, cid, _ = found
    new = rng.choice((0, -1, -5, 1, 2, 1000, I64_MAX, -I64_MAX - 1))
    conn.execute(
        f"UPDATE {_q(table)} SET refs = CASE WHEN refs = ? THEN ? + 1 ELSE ? END WHERE cid = ?",
        (new, new, new, cid),
    )
    return f"{table} cid {cid}: refs -> {new} (or {new}+1 if it was {new})"


@_mutation("row:content-deleted", True)
def _content_deleted(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    found = _content_row(conn, t, rng)
    if found is None:
        return None
    table, cid, _ = found
    conn.execute(f"DELETE FROM {_q(table)} WHERE cid = ?", (cid,))
    return f"{table} cid {cid} deleted (still referenced)"


@_mutation("row:shared-value-missing", True)
def _shared_value_missing(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A deduplicated small value (dedup "all") names a content that is not there."""
    return _set_key_field(
        conn,
        t,
        rng,
        "content_hash IS NOT NULL",
        "content_hash",
        lambda r: rng.choice((b"999999", b"", b"x", 7)),
    )


@_mutation("row:pending-abandoned", True)
def _pending_abandoned(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """An upload whose writer died, with chunks; or a pending row with an impossible pid."""
    for table in _tables_with(conn, t, rng, "__pending"):
        base = table[: -len("__pending")]
        pid = rng.choice((2_000_000_000, -1, 0, I64_MAX))
        cur = conn.execute(f"INSERT INTO {_q(table)} (pid, started_at) VALUES (?, 0)", (pid,))
        blob = int(cur.lastrowid or 0)
        cid = conn.execute(f"SELECT cid FROM {_q(base + '__content')} LIMIT 1").fetchone()
        if cid is not None:
            conn.execute(f"INSERT INTO {_q(base + '__chunks')} (id, cid) VALUES (?, ?)", (blob << 32, cid[0]))
        return f"{table}: blob {blob} pending for pid {pid}"
    return None


# -- policy, history, format markers, schema ---------------------------------------------------------


@_mutation("row:policy-garbage", True)
def _policy_garbage(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    tables = _tables_with(conn, t, rng, "__cache")
    if not tables:
        return None
    field, value = rng.choice(
        (
            ("max_bytes", rng.choice(EXTREMES)),
            ("eviction", rng.choice(("bogus", "", None, 3))),
            ("dedup", rng.choice(("bogus", "", None, 3))),
            ("default_ttl_ms", rng.choice(EXTREMES)),
            ("history_keep", rng.choice(EXTREMES)),
            ("stored_bytes", rng.choice(EXTREMES)),
            ("hits", rng.choice(EXTREMES)),
            ("clock_ms", rng.choice(EXTREMES)),
        )
    )
    conn.execute(f"UPDATE {_q(tables[0])} SET {field} = ?", (value,))
    return f"{tables[0]}.{field} -> {value!r}"


@_mutation("row:policy-missing", True)
def _policy_missing(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    tables = _tables_with(conn, t, rng, "__cache")
    if not tables:
        return None
    conn.execute(f"DELETE FROM {_q(tables[0])}")
    return f"{tables[0]}: policy row deleted"


@_mutation("row:history-damaged", True)
def _history_damaged(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    for table in _tables_with(conn, t, rng, "__history"):
        row = _pick(conn, f"SELECT hid FROM {_q(table)}", rng)
        if row is None:
            continue
        field, value = rng.choice(
            (
                ("size", rng.choice(EXTREMES)),
                ("blob_id", rng.choice(EXTREMES)),
                ("chunk_size", rng.choice(EXTREMES)),
                ("encoding", rng.choice((9, -1))),
                ("ended_by", rng.choice((7, -1))),
                ("inline_data", b"\x00" * rng.randint(0, 9)),
            )
        )
        conn.execute(f"UPDATE {_q(table)} SET {field} = ? WHERE hid = ?", (value, row[0]))
        return f"{table} hid {row[0]}: {field} -> {value!r}"
    return None


@_mutation("row:history-version", False)
def _history_version(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A kept version's number changed: versions have no checksum, and only a loose order."""
    for table in _tables_with(conn, t, rng, "__history"):
        row = _pick(conn, f"SELECT hid FROM {_q(table)}", rng)
        if row is not None:
            value = rng.choice(EXTREMES)
            conn.execute(f"UPDATE {_q(table)} SET version = ? WHERE hid = ?", (value, row[0]))
            return f"{table} hid {row[0]}: version -> {value}"
    return None


@_mutation("row:format-markers", True)
def _format_markers(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    choice = rng.choice(("user_version", "application_id", "meta"))
    if choice == "user_version":
        value = rng.choice((2, 99, -1))
        conn.execute(f"PRAGMA user_version = {value}")
        return f"user_version = {value}"
    if choice == "application_id":
        value = rng.choice((0x12345678, -1))
        conn.execute(f"PRAGMA application_id = {value}")
        return f"application_id = {value}"
    value2 = rng.choice((2, 0, -1, "one", None))
    conn.execute("UPDATE ambervault_meta SET value = ? WHERE name = 'format_version'", (value2,))
    return f"ambervault_meta.format_version = {value2!r}"


@_mutation("row:table-dropped", True)
def _table_dropped(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    table = rng.choice(t.kv_tables)
    suffix = rng.choice(("__chunks", "__content", "__pending", "__cache", ""))
    if not _tables_with(conn, Target((table,), t.has_columns), rng, suffix):
        return None
    # Triggers that name the table go with it; _triggers_dropped re-creates the others only.
    conn.execute(f"DROP TABLE {_q(table + suffix)}")
    return f"table {table + suffix} dropped"


# -- columns -----------------------------------------------------------------------------------


def _column(conn: sqlite3.Connection, rng: random.Random, where: str = "1") -> Optional[Tuple[Any, ...]]:
    return _pick(
        conn,
        f"SELECT col_id, name, dtype, length, data_bytes, min_chunk, max_chunk, tail, index_tail "
        f"FROM ambervault_columns WHERE {where}",
        rng,
    )


def _set_column_field(
    conn: sqlite3.Connection,
    rng: random.Random,
    field: str,
    value: Callable[[Tuple[Any, ...]], Any],
    where: str = "1",
) -> Optional[str]:
    row = _column(conn, rng, where)
    if row is None:
        return None
    new = value(row)
    conn.execute(f"UPDATE ambervault_columns SET {field} = ? WHERE col_id = ?", (new, row[0]))
    return f"column {row[1]!r} ({row[2]}): {field} -> {new!r}"


_VARIABLE = "dtype IN ('bytes', 'str', 'str:utf16', 'str:latin1', 'str:ascii', 'msgpack', 'json', 'cbor')"


@_mutation("col:length-extreme", True)
def _col_length_extreme(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_column_field(conn, rng, "length", lambda r: rng.choice(EXTREMES))


@_mutation("col:length-off-by-one", True)
def _col_length_off(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_column_field(conn, rng, "length", lambda r: r[3] + rng.choice((-1, 1)))


@_mutation("col:data-bytes-wrong", True)
def _col_data_bytes(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_column_field(conn, rng, "data_bytes", lambda r: rng.choice((*EXTREMES, r[4] + 1, r[4] - 1)))


@_mutation("col:shrunk-consistently", False)
def _col_shrunk(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A fixed-width column one element shorter, length, data size and tail agreeing: nothing
    in the file says an element is missing."""
    row = _column(conn, rng, f"NOT ({_VARIABLE}) AND length > 0 AND tail IS NOT NULL")
    if row is None:
        return None
    width = row[4] // row[3]
    tail = row[7][:-width] if len(row[7]) > width else None
    conn.execute(
        "UPDATE ambervault_columns SET length = ?, data_bytes = ?, tail = ? WHERE col_id = ?",
        (row[3] - 1, row[4] - width, tail, row[0]),
    )
    return f"column {row[1]!r}: last element dropped consistently"


@_mutation("col:chunk-plan", True)
def _col_chunk_plan(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    field = rng.choice(("min_chunk", "max_chunk"))
    return _set_column_field(conn, rng, field, lambda r: rng.choice((*EXTREMES, 3, r[5] // 2, r[6] * 2)))


@_mutation("col:dtype-invalid", True)
def _col_dtype_invalid(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    bad = (
        "i128",
        "",
        "vec:f32:0",
        "bytes:0",
        "bytes:-1",
        "str:3:utf16",
        "vec:f32",
        "str:99999999999",
        "f8",
        None,
        5,
    )
    return _set_column_field(conn, rng, "dtype", lambda r: rng.choice(bad))


#: dtypes of the same width, read differently: nothing in the file tells them apart.
_SAME_WIDTH = {
    "i32": "f32",
    "f32": "u32",
    "u32": "i32",
    "i64": "f64",
    "f64": "u64",
    "u64": "i64",
    "i16": "f16",
    "f16": "u16",
    "u16": "i16",
    "i8": "bool",
    "bool": "u8",
    "u8": "i8",
    "str": "bytes",
    "bytes": "str:latin1",
    "msgpack": "json",
    "json": "cbor",
    "cbor": "msgpack",
    "str:utf16": "str",
    "str:latin1": "str:ascii",
    "str:ascii": "msgpack",
    "bytes:6": "str:6",
    "str:8": "bytes:8",
    "str:8:utf16": "str:8",
    "vec:f32:3": "vec:i32:3",
    "vec:u8:2:2": "vec:i8:4",
}


@_mutation("col:dtype-same-width", False)
def _col_dtype_same_width(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    return _set_column_field(conn, rng, "dtype", lambda r: _SAME_WIDTH.get(r[2], "bytes"))


@_mutation("col:dtype-other-width", True)
def _col_dtype_other_width(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    others = {1: "i16", 2: "i32", 4: "i64", 8: "i16"}
    return _set_column_field(
        conn,
        rng,
        "dtype",
        lambda r: others.get(r[4] // max(r[3], 1), "i8"),
        f"NOT ({_VARIABLE}) AND length > 0",
    )


def _set_tail(conn: sqlite3.Connection, row: Tuple[Any, ...], new: bytes) -> str:
    conn.execute("UPDATE ambervault_columns SET tail = ? WHERE col_id = ?", (new, row[0]))
    return f"column {row[1]!r}: tail {len(row[7])} -> {len(new)} bytes"


@_mutation("col:tail-ragged", True)
def _col_tail_ragged(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A tail a byte longer or shorter: not whole elements (fixed width above one byte), or not
    the bytes of the index tail's elements (variable width)."""
    row = _column(
        conn, rng, f"tail IS NOT NULL AND length(tail) > 1 AND ({_VARIABLE} OR data_bytes > length)"
    )
    if row is None:
        return None
    return _set_tail(conn, row, rng.choice((row[7] + b"\x00", row[7][:-1])))


@_mutation("col:tail-resized-variable", True)
def _col_tail_resized_variable(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A variable-width tail emptied or tripled: it no longer starts where its elements do."""
    row = _column(conn, rng, f"tail IS NOT NULL AND {_VARIABLE}")
    if row is None:
        return None
    return _set_tail(conn, row, rng.choice((b"", row[7] * 3)))


@_mutation("col:tail-resized-fixed", False)
def _col_tail_resized_fixed(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A fixed-width tail emptied or tripled (whole elements): the elements it held are read
    from the last chunk's unused bytes, or other bytes are read in their place. Nothing in the
    file records how long the tail should be, and the chunk count usually still agrees."""
    row = _column(conn, rng, f"tail IS NOT NULL AND NOT ({_VARIABLE})")
    if row is None:
        return None
    return _set_tail(conn, row, rng.choice((b"", row[7] * 3)))


@_mutation("col:index-tail-damaged", True)
def _col_index_tail(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """Index-tail ends that decrease, run past the data, or are not whole 8-byte entries."""
    row = _column(conn, rng, "index_tail IS NOT NULL")
    if row is None:
        return None
    ends = bytearray(row[8])
    how = rng.choice(("decreasing", "past-end", "ragged", "huge"))
    if how == "ragged":
        ends += b"\x01"
    else:
        value = {"decreasing": 0, "past-end": row[4] + 100, "huge": (1 << 64) - 1}[how]
        ends[-8:] = value.to_bytes(8, "little")
    conn.execute("UPDATE ambervault_columns SET index_tail = ? WHERE col_id = ?", (bytes(ends), row[0]))
    return f"column {row[1]!r}: index tail {how}"


def _column_chunk(
    conn: sqlite3.Connection, rng: random.Random, kind: Optional[int] = None
) -> Optional[Tuple[int, bytes]]:
    where = "" if kind is None else f"WHERE (id >> 32) & 1 = {kind}"
    return _pick(conn, f"SELECT id, data FROM ambervault_column_chunks {where}", rng)


def _chunk_name(chunk_id: int) -> str:
    return f"column {chunk_id >> 33} stream {(chunk_id >> 32) & 1} chunk {chunk_id & 0xFFFFFFFF}"


@_mutation("col:chunk-missing", True)
def _col_chunk_missing(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    row = _column_chunk(conn, rng)
    if row is None:
        return None
    conn.execute("DELETE FROM ambervault_column_chunks WHERE id = ?", (row[0],))
    return f"{_chunk_name(row[0])} deleted"


@_mutation("col:chunk-length-wrong", True)
def _col_chunk_length(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    row = _column_chunk(conn, rng)
    if row is None:
        return None
    new = rng.choice((row[1][:-1], row[1] + b"\x00", b"", row[1][: len(row[1]) // 2]))
    conn.execute("UPDATE ambervault_column_chunks SET data = ? WHERE id = ?", (new, row[0]))
    return f"{_chunk_name(row[0])}: {len(row[1])} -> {len(new)} bytes"


@_mutation("col:chunk-extra", True)
def _col_chunk_extra(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A chunk row past a stream's end, or one owned by no column."""
    row = _column_chunk(conn, rng)
    if row is None:
        return None
    new = rng.choice((row[0] + 1000, (999 << 33) | (row[0] & 0x1FFFFFFFF), row[0] | 0xFFFFFFFF))
    conn.execute("INSERT OR IGNORE INTO ambervault_column_chunks (id, data) VALUES (?, ?)", (new, row[1]))
    return f"extra {_chunk_name(new)}"


@_mutation("col:chunks-swapped", False)
def _col_chunks_swapped(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """Two chunk rows of equal length exchange their bytes: every count still agrees."""
    rows = conn.execute("SELECT id, length(data) FROM ambervault_column_chunks").fetchall()
    by_length: Dict[int, List[int]] = {}
    for chunk_id, length in rows:
        by_length.setdefault(length, []).append(chunk_id)
    pairs = [ids for ids in by_length.values() if len(ids) >= 2]
    if not pairs:
        return None
    a, b = rng.sample(rng.choice(pairs), 2)
    read = "SELECT data FROM ambervault_column_chunks WHERE id = ?"
    data_a, data_b = (conn.execute(read, (i,)).fetchone()[0] for i in (a, b))
    conn.execute("UPDATE ambervault_column_chunks SET data = ? WHERE id = ?", (data_b, a))
    conn.execute("UPDATE ambervault_column_chunks SET data = ? WHERE id = ?", (data_a, b))
    return f"{_chunk_name(a)} <-> {_chunk_name(b)}"


@_mutation("col:chunk-bytes-changed", False)
def _col_chunk_bytes(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """Bytes inside a data chunk changed (0xFF runs, so text turns into invalid UTF-8 and
    bools into 0xFF): no checksum covers column data."""
    row = _column_chunk(conn, rng, 0)
    if row is None:
        return None
    data = bytearray(row[1])
    at = rng.randrange(len(data))
    length = rng.randint(1, 8)
    data[at : at + length] = b"\xff" * len(data[at : at + length])
    conn.execute("UPDATE ambervault_column_chunks SET data = ? WHERE id = ?", (bytes(data), row[0]))
    return f"{_chunk_name(row[0])}: {length} bytes at {at} set to 0xff"


@_mutation("col:index-ends-damaged", True)
def _col_index_ends(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """An end offset in the index stream's chunks that decreases or points past the data."""
    row = _column_chunk(conn, rng, 1)
    if row is None:
        return None
    data = bytearray(row[1])
    entry = rng.randrange(len(data) // 8) * 8
    value = rng.choice((0, (1 << 63) - 1, (1 << 64) - 1, 1 << 40))
    data[entry : entry + 8] = value.to_bytes(8, "little")
    conn.execute("UPDATE ambervault_column_chunks SET data = ? WHERE id = ?", (bytes(data), row[0]))
    return f"{_chunk_name(row[0])}: end at byte {entry} -> {value}"


@_mutation("col:id-moved", True)
def _col_id_moved(conn: sqlite3.Connection, t: Target, rng: random.Random) -> Optional[str]:
    """A column's id changed: its chunks now belong to no column and it has none."""
    row = _column(conn, rng)
    if row is None:
        return None
    new = rng.choice((row[0] + 500, (1 << 30) + 5, -3))
    conn.execute("UPDATE ambervault_columns SET col_id = ? WHERE col_id = ?", (new, row[0]))
    return f"column {row[1]!r}: col_id {row[0]} -> {new}"
