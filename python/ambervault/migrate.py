"""Moving in from kohakuvault: copy a kohakuvault 1.1.0 file into a new ambervault file.

:func:`migrate_kohakuvault` (and the ``ambervault migrate OLD NEW`` command) reads the old file
with Python's ``sqlite3`` module only, opened read-only; kohakuvault itself is never imported.
Every key-value table is copied with its values decoded from their kohakuvault header into
typed values, every column with its dtype, in constant memory, and a
:class:`MigrationSummary` says what was copied and what was not (and why).

What kohakuvault 1.1.0 writes (learned from its source; the layouts are restated here because
the migration depends on them):

- A key-value table ``T`` is ``CREATE TABLE T (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT
  NULL)``, one row per key, the whole value in one BLOB (below SQLite's 1 GB limit). Keys are
  the bytes of the key (a ``str`` key as UTF-8) and kohakuvault returns them as ``bytes``.
- A value written with auto-pack and headers on (its defaults) starts with a 10-byte header:
  ``89 4B | version 01 | encoding | flags | 00 00 00 | 56 4B``, then the payload. Encodings:
  0 raw, 1 pickle, 2 "DataPacker", 3 JSON text, 4 MessagePack, 5 CBOR, 6 UTF-8 text. A value
  without that header (``bytes`` values, streamed values, anything written with headers off)
  is raw bytes, and kohakuvault reads it back as ``bytes``.
- DataPacker payloads come from auto-pack: an ``int`` or ``float`` is its 8 little-endian bytes
  (i64 or f64, with nothing saying which), a numpy array is ``elem-type (1) | ndim (1) | shape
  (ndim x u32 LE) | data (LE)``.
- Columns live in ``kvault_col_columns(col_id, name, dtype, elem_size, length, block_bytes)``,
  ``kvault_col_blocks(block_id, col_id, block_no, first_row, row_count, used_bytes, ...)`` and
  ``kvault_col_data(block_id, payload, offsets)``. A fixed-width column's block holds
  ``row_count`` elements of ``elem_size`` bytes back to back; a variable-width block holds the
  elements' bytes in ``payload`` and ``row_count + 1`` little-endian u64 offsets into it.

The decisions, also in ``docs/compatibility.md``:

- Raw values are copied byte for byte (streamed, whatever their size). JSON, MessagePack and
  CBOR payloads are checked by decoding them, then kept byte for byte under the same ambervault
  encoding (both libraries read them as the same values). UTF-8 text becomes a ``str`` value,
  DataPacker numbers and arrays become ``int``/``float`` and numpy values, stored by ambervault's
  normal typed path. Pickles are skipped unless ``allow_pickle=True``; then their bytes are
  copied under ambervault's pickle encoding, still without being unpickled.
- A DataPacker number is read as kohakuvault reads it, except where kohakuvault's guess cannot
  be what was written: 8 bytes that are a denormal float or a NaN with a payload are integers
  (kohakuvault returns a meaningless float for integers beyond ±10**12, e.g. millisecond
  timestamps), and the bits of ``-0.0`` are ``-0.0`` (kohakuvault returns ``-2**63``). A 0-d
  array (a numpy scalar) becomes that numpy scalar.
- kohakuvault's default table ``kv`` becomes ambervault's default table ``kvault`` (unless the
  old file also has a ``kvault`` table), so ``KVault(path)`` finds it as ``kohakuvault.KVault(
  path)`` did. Other tables keep their names.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import sqlite3
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import _codec
from ._file import KeyArg
from .columns import ColumnVault
from .exceptions import InvalidArgument, NotFound
from .kvault import KVault

__all__ = ["ColumnCopy", "MigrationSummary", "Skipped", "TableCopy", "migrate_kohakuvault"]

# -- kohakuvault 1.1.0's value header ---------------------------------------------------------
_HEADER_SIZE = 10
_MAGIC_OPEN, _MAGIC_CLOSE, _HEADER_VERSION = b"\x89K", b"VK", 1
_KV_RAW, _KV_PICKLE, _KV_DATAPACKER, _KV_JSON, _KV_MSGPACK, _KV_CBOR, _KV_UTF8 = range(7)
_KV_ENCODING_NAMES = {
    _KV_RAW: "raw",
    _KV_PICKLE: "pickle",
    _KV_DATAPACKER: "datapacker",
    _KV_JSON: "json",
    _KV_MSGPACK: "msgpack",
    _KV_CBOR: "cbor",
    _KV_UTF8: "utf8-text",
}
#: kohakuvault encodings whose payload ambervault keeps byte for byte, with its own code.
_SAME_BYTES = {_KV_JSON: _codec.JSON, _KV_MSGPACK: _codec.MSGPACK, _KV_CBOR: _codec.CBOR}

# DataPacker element types: type byte -> little-endian numpy dtype.
_ELEMENT_TYPES = {
    1: "<f4",
    2: "<f8",
    3: "<i4",
    4: "<i8",
    5: "u1",
    6: "<u2",
    7: "<u4",
    8: "<u8",
    9: "i1",
    10: "<i2",
}

_NUMERIC_COLUMNS = {
    "bool": "?",
    "i8": "i1",
    "i16": "<i2",
    "i32": "<i4",
    "i64": "<i8",
    "u8": "u1",
    "u16": "<u2",
    "u32": "<u4",
    "u64": "<u8",
    "f16": "<f2",
    "f32": "<f4",
    "f64": "<f8",
}

#: How kohakuvault's text encodings are stored in ambervault, by Python codec name. A text
#: encoding not listed here is stored as ``str`` (UTF-8): the elements stay the same text.
TEXT_DTYPES: Dict[str, str] = {
    "utf-8": "str",
    "utf-16-le": "str:utf16",
    "latin-1": "str:latin1",
    "iso8859-1": "str:latin1",
    "ascii": "str:ascii",
}

#: The ambervault dtype of kohakuvault's fixed-width ``str:N`` columns, by the text's encoding,
#: with ``{n}`` for the width (the same bytes per element). Text in another encoding becomes
#: variable-width ``str`` (the same strings: kohakuvault strips the zero padding when it reads
#: them, and so does the migration).
FIXED_TEXT_DTYPES: Dict[str, str] = {
    "utf-8": "str:{n}",
    "utf-16-le": "str:{n}:utf16",
    "latin-1": "str:{n}:latin1",
    "ascii": "str:{n}:ascii",
}

_SMALL_VALUE = 64 << 10  # values up to this size are fetched in batches of _ROWS_PER_QUERY
_ROWS_PER_QUERY = 256
_BATCH_BYTES = 16 << 20  # a write batch (one transaction) holds at most about this much
_BATCH_KEYS = 1000
_PIECE = 4 << 20  # bytes read from a BLOB at a time
_MAX_KEY = 1 << 20  # ambervault's longest key
_EXAMPLES = 10  # keys named per kind of skipped value


# -- the summary ------------------------------------------------------------------------------
@dataclass
class TableCopy:
    """One key-value table that was copied."""

    name: str  #: its name in the old file
    new_name: str  #: its name in the new file
    keys: int = 0  #: keys copied
    bytes: int = 0  #: bytes of the old values copied (headers included)
    encodings: Dict[str, int] = field(default_factory=dict)  #: keys copied, by kohakuvault encoding


@dataclass
class ColumnCopy:
    """One column that was copied."""

    name: str
    dtype: str  #: kohakuvault's dtype
    new_dtype: str  #: ambervault's dtype
    elements: int = 0
    bytes: int = 0  #: bytes of the old elements
    note: Optional[str] = None  #: why the dtype changed, when it did


@dataclass
class Skipped:
    """Something that was not copied (or not as it was), with the reason: a table, a column, or
    a kind of value in one table (then ``count`` values, the first few keys in ``examples``)."""

    what: str
    reason: str
    count: int = 1
    examples: List[str] = field(default_factory=list)


@dataclass
class MigrationSummary:
    """What :func:`migrate_kohakuvault` copied, and what it did not."""

    source: str
    destination: str
    tables: List[TableCopy] = field(default_factory=list)
    columns: List[ColumnCopy] = field(default_factory=list)
    #: Tables, columns and values that were not copied.
    skipped: List[Skipped] = field(default_factory=list)
    #: Values copied, but not as kohakuvault would have read them (see the module docs).
    notes: List[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def keys(self) -> int:
        """Keys copied, over all tables."""
        return sum(t.keys for t in self.tables)

    @property
    def value_bytes(self) -> int:
        """Bytes of the values copied, over all tables."""
        return sum(t.bytes for t in self.tables)

    @property
    def elements(self) -> int:
        """Column elements copied, over all columns."""
        return sum(c.elements for c in self.columns)

    @property
    def element_bytes(self) -> int:
        """Bytes of the column elements copied."""
        return sum(c.bytes for c in self.columns)

    @property
    def skipped_count(self) -> int:
        """Number of things not copied (each skipped value counts)."""
        return sum(s.count for s in self.skipped)

    def to_dict(self) -> Dict[str, Any]:
        """The summary as plain data (for JSON), totals included."""
        data = asdict(self)
        data.update(
            keys=self.keys,
            value_bytes=self.value_bytes,
            elements=self.elements,
            element_bytes=self.element_bytes,
            skipped_count=self.skipped_count,
        )
        return data

    def lines(self) -> List[str]:
        """The summary as text, one line per table, column, and kind of skipped item."""
        out = [
            f"migrated {self.source} -> {self.destination} in {self.seconds:.1f} s: "
            f"{self.keys:,} keys ({_human(self.value_bytes)}) in {len(self.tables)} table(s), "
            f"{self.elements:,} elements ({_human(self.element_bytes)}) in {len(self.columns)} column(s)"
        ]
        for t in self.tables:
            kinds = ", ".join(f"{name} {n:,}" for name, n in sorted(t.encodings.items()))
            rename = f" -> {t.new_name}" if t.new_name != t.name else ""
            out.append(f"table {t.name}{rename}: {t.keys:,} keys, {_human(t.bytes)} ({kinds or 'empty'})")
        for c in self.columns:
            dtype = c.dtype if c.dtype == c.new_dtype else f"{c.dtype} -> {c.new_dtype}"
            line = f"column {c.name} ({dtype}): {c.elements:,} elements, {_human(c.bytes)}"
            out.append(line + (f"; {c.note}" if c.note else ""))
        for s in self.skipped:
            out.append(f"skipped {s.what}: {s.reason}" + _examples(s))
        for s in self.notes:
            out.append(f"note: {s.what}: {s.reason}" + _examples(s))
        return out


def _examples(s: Skipped) -> str:
    if not s.examples:
        return ""
    more = ", ..." if s.count > len(s.examples) else ""
    return f" ({', '.join(s.examples)}{more})"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _Tally:
    """Skipped values (or notes), counted by (table, reason), with the first few keys."""

    def __init__(self) -> None:
        self.items: Dict[Tuple[str, str], Skipped] = {}

    def add(self, table: str, reason: str, key: bytes) -> None:
        entry = self.items.get((table, reason))
        if entry is None:
            entry = self.items[(table, reason)] = Skipped("", reason, 0)
        entry.count += 1
        if len(entry.examples) < _EXAMPLES:
            entry.examples.append(repr(key))

    def finish(self) -> List[Skipped]:
        """The entries, each named by its count and table ("3 values in table kv")."""
        for (table, _), entry in self.items.items():
            entry.what = f"{entry.count:,} value{'s' if entry.count != 1 else ''} in table {table}"
        return list(self.items.values())


# -- progress ---------------------------------------------------------------------------------
class _Progress:
    """One line on stderr, redrawn at most ten times a second."""

    def __init__(self, enabled: bool, total_items: int, total_bytes: int) -> None:
        self.enabled = enabled
        self.total_items = total_items
        self.total_bytes = total_bytes
        self.items = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0

    def add(self, items: int, nbytes: int) -> None:
        self.items += items
        self.bytes += nbytes
        if self.enabled:
            now = time.monotonic()
            if now - self._last >= 0.1:
                self._last = now
                self._draw()

    def _draw(self) -> None:
        share = self.bytes / self.total_bytes if self.total_bytes else 1.0
        sys.stderr.write(
            f"\rmigrating: {self.items:,}/{self.total_items:,} items, "
            f"{_human(self.bytes)}/{_human(self.total_bytes)} ({share:.0%}) "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


# -- reading the old file ---------------------------------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _open_source(src: str) -> sqlite3.Connection:
    """The old file, opened read-only, after checking that it is a kohakuvault file."""
    if not os.path.exists(src):
        raise NotFound(f"{src} does not exist")
    if os.path.isdir(src):
        raise InvalidArgument(f"{src} is a directory, not a kohakuvault file")
    with open(src, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise InvalidArgument(f"{src} is not a kohakuvault file (not a SQLite database)")
    uri = Path(os.path.abspath(src)).as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] == 0x414D4256:
            raise InvalidArgument(f"{src} is already an ambervault file; nothing to migrate")
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not names & {"kohakuvault_meta", "kvault_col_format", "kvault_col_columns"}:
            raise InvalidArgument(
                f"{src} is not a kohakuvault file (it has none of kohakuvault's tables "
                "kohakuvault_meta, kvault_col_format)"
            )
    except BaseException:
        conn.close()
        raise
    return conn


def _is_kv_table(conn: sqlite3.Connection, name: str) -> bool:
    columns = [
        (row[1], str(row[2]).upper(), row[3], row[5])
        for row in conn.execute(f"PRAGMA table_info({_quote(name)})")
    ]
    return columns == [("key", "BLOB", 1, 1), ("value", "BLOB", 1, 0)]


def _classify_tables(conn: sqlite3.Connection) -> Tuple[List[str], bool, List[Skipped]]:
    """The key-value tables, whether there are columns, and the tables left out."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    virtual = [name for name, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL TABLE")]
    kv_tables: List[str] = []
    skipped: List[Skipped] = []
    has_columns = False
    for name, sql in rows:
        if name.startswith("sqlite_") or name == "kohakuvault_meta":
            continue
        if name in ("kvault_col_format", "kvault_col_blocks", "kvault_col_data"):
            continue
        if name == "kvault_col_columns":
            has_columns = True
        elif name in virtual:
            kind = "USING " + (sql or "").split("USING", 1)[-1].strip().split("(")[0].strip()
            what = {"USING vec0": "a VectorKVault vector index", "USING fts5": "a TextVault full-text index"}
            skipped.append(
                Skipped(
                    f"table {name}",
                    f"{what.get(kind, 'a virtual table ' + kind)}: not migrated (ambervault has no "
                    "vector or text index yet); its values are in " + f"{name}_values",
                )
            )
        elif any(name.startswith(v + "_") for v in virtual):
            continue  # the index's own tables, reported with it
        elif _is_kv_table(conn, name):
            kv_tables.append(name)
        else:
            skipped.append(Skipped(f"table {name}", "not a kohakuvault key-value or column table"))
    return kv_tables, has_columns, skipped


def _read_blob(
    conn: sqlite3.Connection, table: str, column: str, rowid: int, offset: int, size: int
) -> bytes:
    """``size`` bytes of a BLOB from ``offset``, read incrementally where Python allows it."""
    if size <= 0:
        return b""
    if hasattr(conn, "blobopen"):  # Python 3.11+
        with conn.blobopen(table, column, rowid, readonly=True) as blob:
            blob.seek(offset)
            data = blob.read(size)
    else:  # pragma: no cover - Python < 3.11 reads the BLOB through SQL
        data = conn.execute(
            f"SELECT substr({_quote(column)}, ?, ?) FROM {_quote(table)} WHERE rowid = ?",
            (offset + 1, size, rowid),
        ).fetchone()[0]
    if len(data) != size:
        raise InvalidArgument(f"{table} row {rowid}: the stored value is shorter than its recorded size")
    return bytes(data)


def _blob_pieces(conn: sqlite3.Connection, table: str, rowid: int, start: int, size: int) -> Iterator[bytes]:
    offset = start
    end = start + size
    while offset < end:
        step = min(_PIECE, end - offset)
        yield _read_blob(conn, table, "value", rowid, offset, step)
        offset += step


def _parse_header(head: bytes) -> Union[int, str, None]:
    """kohakuvault's encoding code from a value's first bytes; None when the value has no header
    (raw bytes); a message when it starts like a header but is not a valid one."""
    if len(head) < _HEADER_SIZE or head[:2] != _MAGIC_OPEN:
        return None
    if head[8:10] != _MAGIC_CLOSE:
        return "starts like a kohakuvault header, but its closing magic is wrong"
    if head[2] != _HEADER_VERSION:
        return f"has a kohakuvault header of unknown version {head[2]}"
    if head[5:8] != b"\x00\x00\x00":
        return "has a kohakuvault header with non-zero reserved bytes"
    if head[3] not in _KV_ENCODING_NAMES:
        return f"has a kohakuvault header with unknown encoding {head[3]}"
    return head[3]


# -- decoding values --------------------------------------------------------------------------
class _Encoded:
    """A value already encoded: its bytes and ambervault encoding code."""

    __slots__ = ("code", "data")

    def __init__(self, data: bytes, code: int) -> None:
        self.data = data
        self.code = code


_MANTISSA = (1 << 52) - 1
_NEG_QUIET_NAN = 0xFFF8000000000000


def _datapacker_number(payload: bytes) -> Tuple[Union[int, float], bool]:
    """An 8-byte DataPacker payload as int or float, and whether kohakuvault would have read
    it differently (see the module docs)."""
    bits = int.from_bytes(payload, "little")
    as_int = int.from_bytes(payload, "little", signed=True)
    (as_float,) = struct.unpack("<d", payload)
    top = bits >> 52
    if top == 0 or (top == 0xFFF and bits & _MANTISSA and bits != _NEG_QUIET_NAN):
        # Zero, a denormal float, or a NaN with a payload: the bits of an integer within +-2**52.
        value: Union[int, float] = as_int
    else:
        value = as_float
    # kohakuvault's own guess.
    if math.isfinite(as_float) and abs(math.modf(as_float)[0]) > 1e-9:
        theirs: Union[int, float] = as_float
    elif abs(as_int) < 1_000_000_000_000 or as_int == -(2**63):  # its abs() wraps for -2**63
        theirs = as_int
    else:
        theirs = as_float
    differs = type(theirs) is not type(value) or (theirs != value and not math.isnan(value))
    return value, differs


def _datapacker_array(payload: bytes) -> Any:
    """A DataPacker array payload as a numpy array (a numpy scalar for 0 dimensions), or None
    when the payload is not one."""
    if len(payload) < 2 or payload[0] not in _ELEMENT_TYPES:
        return None
    ndim = payload[1]
    start = 2 + 4 * ndim
    if len(payload) < start:
        return None
    shape = struct.unpack(f"<{ndim}I", payload[2:start])
    import numpy

    dtype = numpy.dtype(_ELEMENT_TYPES[payload[0]])
    if len(payload) - start != math.prod(shape) * dtype.itemsize:
        return None
    array = numpy.frombuffer(payload, dtype, offset=start).reshape(shape)
    native = array.astype(dtype.newbyteorder("="))  # a writable copy, in the machine's order
    return native[()] if ndim == 0 else native


class _ValueCopier:
    """Copies one key-value table, value by value, into an open :class:`KVault`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        table: str,
        kv: KVault,
        allow_pickle: bool,
        copy: TableCopy,
        skipped: _Tally,
        notes: _Tally,
        progress: _Progress,
    ) -> None:
        self.conn = conn
        self.table = table
        self.kv = kv
        self.allow_pickle = allow_pickle
        self.copy = copy
        self.skipped = skipped
        self.notes = notes
        self.progress = progress
        self.batch: List[Tuple[bytes, Any]] = []
        self.batch_bytes = 0
        self._decoder = _codec.ValueCodec(auto_pack=True, allow_pickle=False)

    def run(self) -> None:
        sql = (
            "SELECT rowid, key, typeof(value), length(value), "
            "CASE WHEN typeof(value) = 'text' OR length(value) <= ? THEN value END "
            f"FROM {_quote(self.table)} WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        after = -(2**63)
        while True:
            rows = self.conn.execute(sql, (_SMALL_VALUE, after, _ROWS_PER_QUERY)).fetchall()
            if not rows:
                break
            for rowid, key, kind, size, value in rows:
                self.one(rowid, key, kind, size, value)
            after = rows[-1][0]
        self.flush()

    def one(self, rowid: int, key: Any, kind: str, size: int, value: Any) -> None:
        if isinstance(key, str):
            key = key.encode("utf-8")
        elif not isinstance(key, bytes):
            self.skipped.add(self.table, "the key is not a BLOB", repr(key).encode())
            self.progress.add(1, 0)
            return
        if len(key) > _MAX_KEY:
            self.skipped.add(self.table, "the key is longer than ambervault's 1 MiB limit", key[:40])
            self.progress.add(1, 0)
            return
        if kind == "text":
            value = value.encode("utf-8")
            size = len(value)
        elif kind != "blob":
            self.skipped.add(self.table, f"the value is an SQL {kind}, not a BLOB", key)
            self.progress.add(1, 0)
            return
        if value is not None:
            self.small(key, bytes(value))
        else:
            self.large(rowid, key, size)
        self.progress.add(1, size)

    def small(self, key: bytes, stored: bytes) -> None:
        code = _parse_header(stored[:_HEADER_SIZE])
        if code is None:
            self.add(key, stored, "raw (no header)", len(stored))
            return
        if isinstance(code, str):
            self.notes.add(self.table, f"{code}: copied as raw bytes", key)
            self.add(key, stored, "raw (no header)", len(stored))
            return
        self.typed(key, code, stored[:_HEADER_SIZE], stored[_HEADER_SIZE:], len(stored))

    def large(self, rowid: int, key: bytes, size: int) -> None:
        head = _read_blob(self.conn, self.table, "value", rowid, 0, min(size, _HEADER_SIZE))
        code = _parse_header(head)
        if isinstance(code, str):
            self.notes.add(self.table, f"{code}: copied as raw bytes", key)
        if code is None or isinstance(code, str) or code == _KV_RAW:
            # Raw bytes of any size are streamed straight into the new vault.
            skip = 0 if code is None or isinstance(code, str) else _HEADER_SIZE
            self.kv.put_file(
                key, _blob_pieces(self.conn, self.table, rowid, skip, size - skip), size=size - skip
            )
            self.count("raw" if skip else "raw (no header)", size)
            return
        # A typed value is decoded whole, as kohakuvault itself reads it.
        payload = b"".join(_blob_pieces(self.conn, self.table, rowid, _HEADER_SIZE, size - _HEADER_SIZE))
        self.typed(key, code, head, payload, size)

    def typed(self, key: bytes, code: int, head: bytes, payload: bytes, size: int) -> None:
        """Copies a value with a kohakuvault header (``head``) and its ``payload``. A payload
        that does not decode as its header says (kohakuvault would raise reading it) is copied
        as the raw bytes stored, header included, and reported."""
        name = _KV_ENCODING_NAMES[code]
        if code == _KV_RAW:
            self.add(key, payload, name, size)
        elif code == _KV_PICKLE:
            if not self.allow_pickle:
                self.skipped.add(
                    self.table,
                    "pickle-encoded (kohakuvault pickles None, tuples, sets and any object it cannot "
                    "pack); never unpickled; copy them with --allow-pickle / allow_pickle=True",
                    key,
                )
                return
            # Copied as the pickle it is: nothing is unpickled during the migration.
            self.add(key, _Encoded(payload, _codec.PICKLE), name, size)
        elif code in _SAME_BYTES:
            ours = _SAME_BYTES[code]
            try:
                self._decoder.decode(ours, payload)
            except ImportError:
                pass  # CBOR without cbor2: copied unchecked (reading it needs cbor2 anyway)
            except Exception as e:  # any decoding failure means the same here
                self.notes.add(
                    self.table, f"{name} value that does not decode ({e}): copied as raw bytes", key
                )
                self.add(key, head + payload, "raw (undecodable)", size)
                return
            self.add(key, _Encoded(payload, ours), name, size)
        elif code == _KV_UTF8:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                self.notes.add(self.table, "utf8-text value that is not UTF-8: copied as raw bytes", key)
                self.add(key, head + payload, "raw (undecodable)", size)
                return
            self.add(key, text, name, size)
        else:  # DataPacker
            self.datapacker(key, head, payload, size)

    def datapacker(self, key: bytes, head: bytes, payload: bytes, size: int) -> None:
        if len(payload) == 8:
            number, differs = _datapacker_number(payload)
            if differs:
                self.notes.add(
                    self.table,
                    "number whose 8 bytes kohakuvault 1.1.0 reads back as something else "
                    f"(it guesses int or float); copied as the {type(number).__name__} that was written",
                    key,
                )
            self.add(key, number, f"datapacker {type(number).__name__}", size)
            return
        array = _datapacker_array(payload)
        if array is None:
            self.notes.add(
                self.table, "datapacker value that is neither a number nor an array: copied as raw bytes", key
            )
            self.add(key, head + payload, "raw (undecodable)", size)
            return
        if len(payload) < 8 or payload[1] == 0:
            self.notes.add(
                self.table,
                "numpy scalar or tiny array that kohakuvault 1.1.0 reads back as something else (a "
                "1-element array, bytes or str); copied as the numpy value that was written",
                key,
            )
        self.add(key, array, "datapacker array", size)

    def add(self, key: bytes, value: Any, kind: str, size: int) -> None:
        self.batch.append((key, value))
        self.batch_bytes += size
        self.count(kind, size)
        if len(self.batch) >= _BATCH_KEYS or self.batch_bytes >= _BATCH_BYTES:
            self.flush()

    def count(self, kind: str, size: int) -> None:
        self.copy.keys += 1
        self.copy.bytes += size
        self.copy.encodings[kind] = self.copy.encodings.get(kind, 0) + 1

    def flush(self) -> None:
        if not self.batch:
            return
        encode = self.kv._codec.encode

        def encode_one(value: Any) -> Tuple[Any, int]:
            if type(value) is _Encoded:
                return value.data, value.code
            return encode(value)

        self.kv._backend.put_many(self.batch, None, encode_one)
        self.batch = []
        self.batch_bytes = 0


# -- columns ----------------------------------------------------------------------------------
@dataclass
class _ColumnPlan:
    """How one kohakuvault column is copied."""

    new_dtype: str
    #: For fixed-width columns copied as they are: the numpy dtype and element shape.
    raw: Optional[Tuple[str, Tuple[int, ...]]] = None
    #: Otherwise: turns one element's bytes into the value appended.
    decode: Optional[Callable[[bytes], Any]] = None
    note: Optional[str] = None


def _text_dtype(encoding: str) -> Tuple[str, Callable[[bytes], str], Optional[str]]:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise _Unsupported(f"unknown text encoding {encoding!r}") from None
    dtype = TEXT_DTYPES.get(name)
    note = None
    if dtype is None:
        dtype = "str"
        note = f"ambervault has no {encoding} text column: the same text is stored as UTF-8"

    def decode(data: bytes) -> str:
        return data.decode(name)

    return dtype, decode, note


class _Unsupported(Exception):
    """A kohakuvault column dtype with no ambervault equivalent (the message says why)."""


def _first_msgpack(data: bytes) -> Any:
    import msgpack

    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return unpacker.unpack()


def _first_cbor(data: bytes) -> Any:
    return _codec._cbor2().CBORDecoder(io.BytesIO(data)).decode()


def _column_plan(dtype: str) -> _ColumnPlan:
    """How a kohakuvault column of ``dtype`` is copied; ``_Unsupported`` when it cannot be."""
    parts = dtype.split(":")
    head = parts[0]
    if dtype in _NUMERIC_COLUMNS:
        return _ColumnPlan(dtype, raw=(_NUMERIC_COLUMNS[dtype], ()))
    if head in ("vec", "vector"):
        if len(parts) < 3:
            raise _Unsupported(
                "variable-shape arrays have no ambervault column dtype (only vec:<elem>:<shape>); "
                "store them in a KVault, where numpy arrays keep their shape"
            )
        elem = parts[1]
        if elem not in _NUMERIC_COLUMNS or elem == "bool":
            raise _Unsupported(f"ambervault has no vec: column of {elem} elements")
        shape = tuple(int(p) for p in parts[2:])
        return _ColumnPlan(f"vec:{elem}:{':'.join(map(str, shape))}", raw=(_NUMERIC_COLUMNS[elem], shape))
    if head in ("str", "string"):
        if len(parts) == 1 or (len(parts) == 2 and not parts[1].isdigit()):
            # Variable width (kohakuvault decodes any Python codec name here).
            encoding = "utf-8" if len(parts) == 1 else parts[1]
            encoding = {"utf16le": "utf-16-le", "utf16be": "utf-16-be"}.get(encoding, encoding)
            new, decode, note = _text_dtype(encoding)
            return _ColumnPlan(new, decode=decode, note=note)
        # Fixed width: str:N or str:N:<encoding> (its own encoding names).
        encoding = parts[2] if len(parts) == 3 else "utf8"
        names = {"utf8": "utf-8", "utf-8": "utf-8", "utf16le": "utf-16-le", "utf-16le": "utf-16-le"}
        names.update({"utf16be": "utf-16-be", "utf-16be": "utf-16-be", "ascii": "ascii", "latin1": "latin-1"})
        names["iso-8859-1"] = "latin-1"
        if encoding.lower() not in names:
            raise _Unsupported(f"unknown text encoding {encoding!r}")
        _, decode_text, _ = _text_dtype(names[encoding.lower()])
        template = FIXED_TEXT_DTYPES.get(names[encoding.lower()])
        new = "str" if template is None else template.format(n=parts[1])

        def decode_fixed(data: bytes) -> str:
            return decode_text(data).rstrip("\0")

        note = None
        if template is None:
            note = (
                f"ambervault has no fixed-width text in {names[encoding.lower()]}: stored as str "
                "(padding removed, as kohakuvault removes it when reading)"
            )
        return _ColumnPlan(new, decode=decode_fixed, note=note)
    if dtype == "bytes":
        return _ColumnPlan("bytes", decode=bytes)
    if head == "bytes" and len(parts) == 2 and parts[1].isdigit():
        return _ColumnPlan(dtype, raw=(f"S{int(parts[1])}", ()))
    if head in ("msgpack", "messagepack"):
        if len(parts) == 1:
            import msgpack

            return _ColumnPlan(
                "msgpack", decode=lambda d: msgpack.unpackb(d, raw=False, strict_map_key=False)
            )
        return _ColumnPlan(
            "msgpack", decode=_first_msgpack, note=f"{dtype} is fixed-width: stored as msgpack"
        )
    if head == "cbor":
        _codec._cbor2()  # an ImportError (cbor2 missing) skips the column with its message
        note = None if len(parts) == 1 else f"{dtype} is fixed-width: stored as cbor"
        return _ColumnPlan("cbor", decode=_first_cbor, note=note)
    raise _Unsupported(f"unknown kohakuvault column dtype {dtype!r}")


def _column_blocks(conn: sqlite3.Connection, col_id: int) -> List[Tuple[int, int, int, int]]:
    """``(block_id, first_row, rows, used_bytes)`` of a column's blocks, in order."""
    return conn.execute(
        "SELECT block_id, first_row, row_count, used_bytes FROM kvault_col_blocks "
        "WHERE col_id = ? ORDER BY block_no",
        (col_id,),
    ).fetchall()


def _fixed_pieces(
    conn: sqlite3.Connection, blocks: List[Tuple[int, int, int, int]], width: int
) -> Iterator[Tuple[bytes, int]]:
    """The elements of a fixed-width column as ``(bytes, count)`` pieces of about _PIECE bytes."""
    per_piece = max(1, _PIECE // width)
    for block_id, _, rows, _ in blocks:
        for start in range(0, rows, per_piece):
            n = min(per_piece, rows - start)
            yield _read_blob(conn, "kvault_col_data", "payload", block_id, start * width, n * width), n


def _variable_pieces(
    conn: sqlite3.Connection, blocks: List[Tuple[int, int, int, int]]
) -> Iterator[List[bytes]]:
    """The elements of a variable-width column, in lists of about _PIECE bytes (an element
    larger than that alone)."""
    window = 4096  # offsets read at a time
    for block_id, _, rows, used in blocks:
        for first in range(0, rows, window):
            n = min(window, rows - first)
            raw = _read_blob(conn, "kvault_col_data", "offsets", block_id, first * 8, (n + 1) * 8)
            ends = struct.unpack(f"<{n + 1}Q", raw)
            if any(a > b for a, b in zip(ends, ends[1:])) or ends[-1] > used:
                raise InvalidArgument(f"kvault_col_data block {block_id}: offsets are damaged")
            i = 0
            while i < n:
                j = i + 1
                while j < n and ends[j + 1] - ends[i] <= _PIECE:
                    j += 1
                payload = _read_blob(conn, "kvault_col_data", "payload", block_id, ends[i], ends[j] - ends[i])
                base = ends[i]
                yield [payload[ends[k] - base : ends[k + 1] - base] for k in range(i, j)]
                i = j


def _copy_columns(
    conn: sqlite3.Connection,
    dest: str,
    summary: MigrationSummary,
    progress: _Progress,
    columns: List[Tuple[int, str, str, int, int]],
    key: KeyArg = None,
) -> None:
    plans: List[Tuple[Tuple[int, str, str, int, int], _ColumnPlan, List[Tuple[int, int, int, int]]]] = []
    for col in columns:
        col_id, name, dtype, elem_size, length = col
        try:
            plan = _column_plan(dtype)
        except (_Unsupported, ImportError, ValueError) as e:
            summary.skipped.append(Skipped(f"column {name} ({dtype}, {length:,} elements)", str(e)))
            progress.add(length, 0)
            continue
        blocks = _column_blocks(conn, col_id)
        expected = 0
        for _, first_row, rows, _ in blocks:
            if first_row != expected:
                break
            expected += rows
        if expected != length or (plan.raw is not None and _raw_width(plan) != elem_size):
            summary.skipped.append(
                Skipped(f"column {name} ({dtype})", "its block directory does not match its length (damaged)")
            )
            progress.add(length, 0)
            continue
        plans.append((col, plan, blocks))
    if not plans:
        return
    with ColumnVault(dest, key=key) as cv:
        for (_, name, dtype, elem_size, _), plan, blocks in plans:
            column = cv.create_column(name, plan.new_dtype)
            copy = ColumnCopy(name, dtype, plan.new_dtype, note=plan.note)
            summary.columns.append(copy)
            if plan.raw is not None:
                import numpy

                npdtype, shape = plan.raw
                for data, n in _fixed_pieces(conn, blocks, elem_size):
                    column.extend(numpy.frombuffer(data, npdtype).reshape((n, *shape)))
                    copy.elements += n
                    copy.bytes += len(data)
                    progress.add(n, len(data))
            else:
                decode = plan.decode
                assert decode is not None
                source: Iterator[List[bytes]]
                if elem_size:  # str:N, msgpack:N, cbor:N: fixed width, decoded one by one
                    source = (
                        [data[k * elem_size : (k + 1) * elem_size] for k in range(n)]
                        for data, n in _fixed_pieces(conn, blocks, elem_size)
                    )
                else:
                    source = _variable_pieces(conn, blocks)
                for items in source:
                    try:
                        values = [decode(item) for item in items]
                    except Exception as e:  # any decoding failure is the same here
                        raise InvalidArgument(
                            f"column {name} ({dtype}): an element does not decode: {e}"
                        ) from e
                    column.extend(values)
                    nbytes = sum(map(len, items))
                    copy.elements += len(items)
                    copy.bytes += nbytes
                    progress.add(len(items), nbytes)
        cv.checkpoint()


def _raw_width(plan: _ColumnPlan) -> int:
    import numpy

    assert plan.raw is not None
    npdtype, shape = plan.raw
    return numpy.dtype(npdtype).itemsize * math.prod(shape)


# -- the migration ----------------------------------------------------------------------------
def _remove_partial(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def migrate_kohakuvault(
    src: Union[str, os.PathLike[str]],
    dst: Union[str, os.PathLike[str]],
    *,
    allow_pickle: bool = False,
    progress: Optional[bool] = None,
    key: KeyArg = None,
) -> MigrationSummary:
    """Copy the kohakuvault 1.1.0 file ``src`` into a new ambervault file ``dst``.

    Every key-value table is copied (values decoded from their kohakuvault header into typed
    values; values without a header stay raw bytes), and every column with its dtype, in
    constant memory. ``dst`` is written under a temporary name in its directory and renamed
    when complete, so a failed migration leaves nothing behind. ``src`` is only read.

    :param allow_pickle: also copy kohakuvault's pickle-encoded values (as pickles: open the new
        vault with ``allow_pickle=True`` to read them). Without it they are skipped and
        reported. Nothing is unpickled either way.
    :param progress: draw a progress line on stderr: ``None`` (default) when stderr is a
        terminal, ``True`` always, ``False`` never.
    :param key: encrypt the new file with this key (see :class:`KVault` and
        ``docs/encryption.md``).
    :return: a :class:`MigrationSummary` of what was copied and what was skipped, and why.
    :raises NotFound: ``src`` does not exist.
    :raises InvalidArgument: ``src`` is not a kohakuvault file, or ``dst`` already exists.
    """
    started = time.monotonic()
    source = os.fspath(src)
    dest = os.fspath(dst)
    if not isinstance(source, str) or not isinstance(dest, str):
        raise TypeError("src and dst must be str or os.PathLike paths")
    if os.path.lexists(dest):
        raise InvalidArgument(
            f"{dest} already exists; the migration writes a new file and never overwrites one"
        )
    conn = _open_source(source)
    summary = MigrationSummary(source, dest)
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        conn.close()
        raise InvalidArgument(f"the directory of {dest} does not exist")
    partial = os.path.join(directory, f".{os.path.basename(dest)}.migrating-{os.getpid()}")
    _remove_partial(partial)
    try:
        # One read transaction: every table and column is copied from the same snapshot.
        conn.execute("BEGIN")
        kv_tables, has_columns, skipped_tables = _classify_tables(conn)
        summary.skipped.extend(skipped_tables)
        columns: List[Tuple[int, str, str, int, int]] = []
        if has_columns:
            columns = conn.execute(
                "SELECT col_id, name, dtype, elem_size, length FROM kvault_col_columns ORDER BY col_id"
            ).fetchall()
        total_items = sum(c[4] for c in columns)
        total_bytes = 0
        for table in kv_tables:
            n, size = conn.execute(
                f"SELECT count(*), coalesce(sum(length(value)), 0) FROM {_quote(table)}"
            ).fetchone()
            total_items += n
            total_bytes += size
        for col_id, _, _, elem_size, length in columns:
            if elem_size:
                total_bytes += elem_size * length
            else:
                (used,) = conn.execute(
                    "SELECT coalesce(sum(used_bytes), 0) FROM kvault_col_blocks WHERE col_id = ?", (col_id,)
                ).fetchone()
                total_bytes += used
        show = sys.stderr.isatty() if progress is None else bool(progress)
        bar = _Progress(show, total_items, total_bytes)
        skipped_values, notes = _Tally(), _Tally()
        for table in kv_tables:
            new_name = "kvault" if table == "kv" and "kvault" not in kv_tables else table
            copy = TableCopy(table, new_name)
            try:
                kv = KVault(partial, table=new_name, allow_pickle=allow_pickle, key=key)
            except InvalidArgument as e:
                summary.skipped.append(Skipped(f"table {table}", f"not a valid ambervault table name: {e}"))
                continue
            with kv:
                summary.tables.append(copy)
                _ValueCopier(conn, table, kv, allow_pickle, copy, skipped_values, notes, bar).run()
                kv.checkpoint()
        if columns:
            _copy_columns(conn, partial, summary, bar, columns, key)
        if not os.path.exists(partial):
            ColumnVault(partial, key=key).close()  # nothing to copy: still a valid (empty) ambervault file
        bar.close()
        summary.skipped.extend(skipped_values.finish())
        summary.notes.extend(notes.finish())
        for suffix in ("-wal", "-shm"):
            side = partial + suffix
            if os.path.exists(side):
                if suffix == "-wal" and os.path.getsize(side):
                    raise InvalidArgument(f"{side} was not checkpointed; the migration was not finished")
                os.remove(side)
        try:
            os.link(partial, dest)  # fails, rather than overwrites, if dest appeared meanwhile
        except FileExistsError:
            raise InvalidArgument(f"{dest} was created while the migration ran; it was left alone") from None
        except OSError:  # pragma: no cover - a file system without hard links
            if os.path.lexists(dest):
                raise InvalidArgument(
                    f"{dest} was created while the migration ran; it was left alone"
                ) from None
            os.replace(partial, dest)
        _remove_partial(partial)
    except BaseException:
        _remove_partial(partial)
        raise
    finally:
        conn.close()
    summary.seconds = time.monotonic() - started
    return summary
