"""Columns and key-value scans as Arrow data (pyarrow), and Arrow data into columns.

Everything here imports pyarrow lazily: ambervault itself never needs it. The conversions:

- fixed-width columns become Arrow arrays over the bytes ``to_numpy()`` read, without a copy
  (``bool`` is the exception: Arrow packs booleans into bits);
- ``vec:`` columns become (nested) fixed-size lists over one flat buffer, also without a copy;
- variable-width columns are read as Python objects and converted by pyarrow;
- readers (``pyarrow.RecordBatchReader``) read the columns slice by slice, so a consumer of the
  Arrow C stream (DuckDB, Polars) or a Parquet file never holds more than one batch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._ambervault import canonical_dtype, columns_summary
from .exceptions import InvalidArgument, NotFound

if TYPE_CHECKING:
    from .columns import Column, ColumnVault
    from .kvault import KVault

# Largest end offset of an Arrow string/binary array with 32-bit offsets; beyond it a column
# becomes large_string/large_binary. (A module constant so tests can lower it.)
OFFSET_LIMIT = 2**31 - 1

# Field metadata key naming the ambervault dtype a field came from (so from_arrow and
# Parquet round trips keep dtypes such as str:utf16 or str:16).
DTYPE_KEY = b"ambervault.dtype"

# Bytes a stream batch (and a Parquet row group) aims at, and the row cap of either.
BATCH_BYTES = 16 << 20
ROW_GROUP_BYTES = 64 << 20
MAX_ROWS = 1 << 20

# Arrow type names of the fixed-width numeric dtypes.
_PRIMITIVE = {
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "u8": "uint8",
    "u16": "uint16",
    "u32": "uint32",
    "u64": "uint64",
    "f16": "float16",
    "f32": "float32",
    "f64": "float64",
}
_FROM_PRIMITIVE = {v: k for k, v in _PRIMITIVE.items()}
_FROM_PRIMITIVE["halffloat"] = "f16"
_FROM_PRIMITIVE["float"] = "f32"
_FROM_PRIMITIVE["double"] = "f64"
_PACKED = ("msgpack", "json", "cbor")

_pyarrow: Any = None


def pa() -> Any:
    """The pyarrow module, or an ImportError saying how to get it."""
    global _pyarrow
    if _pyarrow is None:
        try:
            import pyarrow
        except ImportError as e:
            raise ImportError("this operation needs pyarrow>=14: pip install 'ambervault[arrow]'") from e
        _pyarrow = pyarrow
    return _pyarrow


def is_arrow(values: Any) -> bool:
    """Whether ``values`` is a pyarrow Array or ChunkedArray (without importing pyarrow)."""
    module = type(values).__module__
    if not module.startswith("pyarrow"):
        return False
    lib = pa()
    return isinstance(values, (lib.Array, lib.ChunkedArray))


# -- dtypes and Arrow types ----------------------------------------------------------------------


def _utf8_factor(dtype: str) -> float:
    """Most UTF-8 bytes per stored byte of a text dtype (UTF-16 units of 2 bytes become up to
    3 UTF-8 bytes, Latin-1 bytes up to 2)."""
    if dtype.endswith(("utf16", "utf16le")):
        return 1.5
    if dtype.endswith("latin1"):
        return 2.0
    return 1.0


def arrow_type(dtype: str, length: int, data_bytes: int) -> Any:
    """The Arrow type of a column of ``dtype`` holding ``length`` elements in ``data_bytes``."""
    lib = pa()
    if dtype in _PRIMITIVE:
        return getattr(lib, _PRIMITIVE[dtype])()
    if dtype == "bool":
        return lib.bool_()
    if dtype.startswith("bytes:"):
        return lib.binary(int(dtype[6:]))
    if dtype.startswith("vec:"):
        _, elem, *dims = dtype.split(":")
        typ = getattr(lib, _PRIMITIVE[elem])()
        for d in reversed(dims):
            typ = lib.list_(typ, int(d))
        return typ
    if dtype.startswith("str:") and dtype.split(":")[1].isdigit():
        stored = length * int(dtype.split(":")[1])
    else:
        stored = data_bytes
    large = stored * _utf8_factor(dtype) > OFFSET_LIMIT
    if dtype.startswith("str") or dtype == "json":
        return lib.large_string() if large else lib.string()
    return lib.large_binary() if large else lib.binary()  # bytes, msgpack, cbor


def dtype_of(field: Any) -> str:
    """The column dtype an Arrow field maps to, or ``InvalidArgument`` naming the field."""
    lib = pa()
    types = lib.types
    typ = field.type
    meta = field.metadata or {}
    if DTYPE_KEY in meta:
        dtype = canonical_dtype(meta[DTYPE_KEY].decode())
        if _accepts(dtype, typ):
            return dtype
    if types.is_dictionary(typ):
        typ = typ.value_type
    name = str(typ)
    if name in _FROM_PRIMITIVE:
        return _FROM_PRIMITIVE[name]
    if types.is_boolean(typ):
        return "bool"
    if types.is_string(typ) or types.is_large_string(typ) or _is_view(typ, "string"):
        return "str"
    if types.is_binary(typ) or types.is_large_binary(typ) or _is_view(typ, "binary"):
        return "bytes"
    if types.is_fixed_size_binary(typ):
        return f"bytes:{typ.byte_width}"
    if types.is_fixed_size_list(typ):
        dims = []
        while types.is_fixed_size_list(typ):
            dims.append(str(typ.list_size))
            typ = typ.value_type
        elem = _FROM_PRIMITIVE.get(str(typ))
        if elem is not None:
            return f"vec:{elem}:{':'.join(dims)}"
    raise InvalidArgument(
        f"column {field.name!r}: Arrow type {field.type} has no ambervault dtype (supported: "
        "integers, floats, bool, string, binary, fixed_size_binary, fixed-size lists of numbers; "
        "cast the column first, or pass dtypes=)"
    )


def _is_view(typ: Any, kind: str) -> bool:
    return str(typ) == f"{kind}_view"


def _accepts(dtype: str, typ: Any) -> bool:
    """Whether an Arrow array of ``typ`` can be stored in a column of ``dtype`` as it is
    (used to honor a field's ``ambervault.dtype`` metadata)."""
    types = pa().types
    textual = types.is_string(typ) or types.is_large_string(typ)
    binary = types.is_binary(typ) or types.is_large_binary(typ)
    if dtype.startswith("str"):
        return bool(textual)
    if dtype == "json":
        return bool(textual or binary)
    if dtype in ("msgpack", "cbor"):
        return bool(binary)
    return False


def field(name: str, dtype: str, length: int, data_bytes: int) -> Any:
    """The Arrow field of a column, with its dtype in the metadata."""
    return pa().field(
        name, arrow_type(dtype, length, data_bytes), nullable=False, metadata={DTYPE_KEY: dtype.encode()}
    )


# -- columns to Arrow ------------------------------------------------------------------------------


def wrap_numpy(array: Any, typ: Any) -> Any:
    """An Arrow array of ``typ`` over a C-contiguous numpy array's memory: no copy (the Arrow
    buffer keeps the numpy array alive)."""
    lib = pa()
    buffer = lib.py_buffer(array)
    if lib.types.is_fixed_size_list(typ):
        dims = []
        inner = typ
        while lib.types.is_fixed_size_list(inner):
            dims.append(inner.list_size)
            inner = inner.value_type
        flat = lib.Array.from_buffers(inner, array.size, [None, buffer])
        for d in reversed(dims):
            flat = lib.FixedSizeListArray.from_arrays(flat, d)
        return flat
    return lib.Array.from_buffers(typ, len(array), [None, buffer])


def column_slice(
    col: Column, start: Optional[int], stop: Optional[int], typ: Any, decode: bool = False
) -> Any:
    """Elements ``start:stop`` of ``col`` as an Arrow array of ``typ`` (``typ`` None with
    ``decode``: packed values unpacked and typed by pyarrow)."""
    lib = pa()
    dtype = col.dtype
    if dtype == "bool":
        return lib.array(col.to_numpy(start or 0, stop), lib.bool_())
    if col._width is not None and not dtype.startswith("str:"):
        # Fixed width: the bytes to_numpy read, wrapped as they are.
        return wrap_numpy(col.to_numpy(start or 0, stop), typ)
    col._sync()
    items = col._core.get_range(start, stop)  # packed columns: the packed bytes
    if dtype in _PACKED and decode:
        values = [col._unpack(item) for item in items]  # type: ignore[attr-defined]
        try:
            return lib.array(values)
        except (lib.ArrowInvalid, lib.ArrowTypeError, OverflowError) as e:
            raise InvalidArgument(
                f"column {col.name!r} of dtype {dtype}: pyarrow cannot type its unpacked values ({e}); "
                "use to_arrow() without decode to get the packed bytes"
            ) from None
    return lib.array(items, typ)


def _summary(cv: ColumnVault, names: Optional[Sequence[str]]) -> List[Tuple[str, str, int, int]]:
    """``(name, dtype, length, data_bytes)`` of the named columns (all, by name, when None), in
    one snapshot, after flushing pending appends."""
    cv._native  # noqa: B018 - raises ClosedError when closed
    cv._flush_all()
    rows = {row[0]: row for row in columns_summary(cv._file.native)}
    if names is None:
        return [rows[name] for name in sorted(rows)]
    if isinstance(names, str):
        raise TypeError("names must be a list of column names, not a str")
    picked = []
    for name in names:
        if name not in rows:
            raise NotFound(name)
        picked.append(rows[name])
    if len(set(names)) != len(picked):
        raise InvalidArgument(f"names lists a column twice: {list(names)}")
    return picked


def _equal_length(summary: List[Tuple[str, str, int, int]]) -> int:
    lengths = {length for _, _, length, _ in summary}
    if len(lengths) > 1:
        listed = ", ".join(f"{name}={length}" for name, _, length, _ in summary)
        raise InvalidArgument(
            f"columns of a table must have equal lengths, these differ: {listed}; "
            "pass names= with columns of one length"
        )
    return lengths.pop() if lengths else 0


def schema(summary: List[Tuple[str, str, int, int]]) -> Any:
    return pa().schema([field(*row) for row in summary])


def vault_table(cv: ColumnVault, names: Optional[Sequence[str]]) -> Any:
    """The named columns as one ``pyarrow.Table``."""
    summary = _summary(cv, names)
    n = _equal_length(summary)
    sch = schema(summary)
    arrays = [_read(cv, sch.field(i), 0, n) for i in range(len(summary))]
    return pa().Table.from_arrays(arrays, schema=sch)


def _read(cv: ColumnVault, fld: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a column for a table or batch of field ``fld``; a column that
    shrank meanwhile is an error rather than a short table."""
    array = column_slice(cv[fld.name], start, stop, fld.type)
    if len(array) != stop - start:
        raise InvalidArgument(f"column {fld.name!r} shrank while it was read")
    return array


def default_rows(summary: List[Tuple[str, str, int, int]], target: int) -> int:
    """Rows per batch so that a batch holds about ``target`` bytes (1 to MAX_ROWS)."""
    row_bytes = 0
    for _, dtype, length, data_bytes in summary:
        width = _fixed_width(dtype)
        row_bytes += width if width is not None else -(-data_bytes // max(length, 1))
    return max(1, min(MAX_ROWS, target // max(row_bytes, 1)))


def _fixed_width(dtype: str) -> Optional[int]:
    if dtype in _PRIMITIVE:
        return int(dtype[1:]) // 8
    if dtype == "bool":
        return 1
    parts = dtype.split(":")
    if parts[0] in ("bytes", "str") and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1])
    if parts[0] == "vec":
        width = _fixed_width(parts[1]) or 1
        for d in parts[2:]:
            width *= int(d)
        return width
    return None


def _check_rows(rows: Optional[int], what: str) -> Optional[int]:
    if rows is None:
        return None
    if isinstance(rows, bool) or not isinstance(rows, int):
        raise TypeError(f"{what} must be an int, not {type(rows).__name__}")
    if rows < 1:
        raise InvalidArgument(f"{what} must be >= 1, not {rows}")
    return rows


def reader(cv: ColumnVault, names: Optional[Sequence[str]], batch_rows: Optional[int]) -> Any:
    """A ``pyarrow.RecordBatchReader`` over the named columns, reading ``batch_rows`` rows of
    every column per batch. The length is taken when the reader is made: rows appended later
    are not included."""
    _check_rows(batch_rows, "batch_rows")
    summary = _summary(cv, names)
    n = _equal_length(summary)
    sch = schema(summary)
    rows = batch_rows or default_rows(summary, BATCH_BYTES)
    return pa().RecordBatchReader.from_batches(sch, _batches(cv, sch, n, rows))


def _batches(cv: ColumnVault, sch: Any, n: int, rows: int) -> Iterator[Any]:
    lib = pa()
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        arrays = [_read(cv, sch.field(i), start, stop) for i in range(len(sch))]
        yield lib.RecordBatch.from_arrays(arrays, schema=sch)


def write_parquet(
    cv: ColumnVault,
    path: Union[str, os.PathLike[str], Any],
    names: Optional[Sequence[str]],
    row_group_rows: Optional[int],
    options: Dict[str, Any],
) -> int:
    """Write the named columns to a Parquet file, one row group per ``row_group_rows`` rows,
    reading only one row group's slices at a time. A path is written to ``<path>.part`` and
    renamed when complete. Returns the number of rows."""
    _check_rows(row_group_rows, "row_group_rows")
    import pyarrow.parquet as pq

    summary = _summary(cv, names)
    n = _equal_length(summary)
    sch = schema(summary)
    rows = row_group_rows or default_rows(summary, ROW_GROUP_BYTES)
    if isinstance(path, (str, os.PathLike)):
        target = os.fspath(path)
        tmp = target + ".part"
        try:
            with pq.ParquetWriter(tmp, sch, **options) as writer:
                for batch in _batches(cv, sch, n, rows):
                    writer.write_batch(batch, row_group_size=rows)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:  # a writable binary file object
        with pq.ParquetWriter(path, sch, **options) as writer:
            for batch in _batches(cv, sch, n, rows):
                writer.write_batch(batch, row_group_size=rows)
    return n


# -- Arrow into columns ---------------------------------------------------------------------------


def _no_nulls(array: Any, name: str) -> None:
    if array.null_count:
        raise InvalidArgument(
            f"column {name!r}: the Arrow data has {array.null_count} null(s); columns cannot hold "
            "nulls (fill them first, e.g. with pyarrow.compute.fill_null)"
        )


def _chunks(values: Any) -> List[Any]:
    lib = pa()
    return list(values.chunks) if isinstance(values, lib.ChunkedArray) else [values]


def _convert(col: Column, chunk: Any) -> Any:
    """One Arrow chunk in the form ``col.extend`` takes fastest: a numpy array (over the Arrow
    memory where possible) for fixed-width data, else a list of Python values."""
    lib = pa()
    types = lib.types
    typ = chunk.type
    if types.is_dictionary(typ):
        chunk = chunk.dictionary_decode()
        typ = chunk.type
    _no_nulls(chunk, col.name)
    if col.dtype.startswith("vec:") and types.is_fixed_size_list(typ):
        dims = []
        flat = chunk
        while types.is_fixed_size_list(flat.type):
            dims.append(flat.type.list_size)
            flat = flat.flatten()
            _no_nulls(flat, col.name)
        if str(flat.type) in _FROM_PRIMITIVE:
            return flat.to_numpy(zero_copy_only=False).reshape(len(chunk), *dims)
    elif col._bulk:
        if str(typ) in _FROM_PRIMITIVE or types.is_boolean(typ):
            return chunk.to_numpy(zero_copy_only=False)
        if types.is_fixed_size_binary(typ):
            import numpy as np

            width = typ.byte_width
            data = chunk.buffers()[1]
            return np.frombuffer(data, f"S{width}", count=len(chunk), offset=chunk.offset * width)
    return chunk.to_pylist()


def extend(col: Column, values: Any) -> None:
    """``col.extend`` of an Arrow Array or ChunkedArray: fixed-width chunks go through the numpy
    bulk path, others as Python values; several chunks are written in one transaction."""
    chunks = _chunks(values)
    for chunk in chunks:
        _no_nulls(chunk, col.name)
    if len(chunks) == 1:
        col.extend(_convert(col, chunks[0]))
        return
    with col._vault.transaction():
        for chunk in chunks:
            col.extend(_convert(col, chunk))


def _extend_packed(col: Column, values: Any) -> None:
    """Append Arrow arrays of packed bytes (what ``to_arrow`` gave for a packed column) to a
    packed column as they are, after checking that each one unpacks."""
    from .columns import Column as BaseColumn

    unpack = col._unpack  # type: ignore[attr-defined]
    for chunk in _chunks(values):
        items = chunk.cast(pa().large_binary()).to_pylist()
        for i, item in enumerate(items):
            try:
                unpack(item)
            except Exception as e:
                raise InvalidArgument(
                    f"column {col.name!r}: element {i} of the Arrow data is not valid {col.dtype} ({e})"
                ) from None
        BaseColumn.extend(col, items)


def from_table(cv: ColumnVault, table: Any, dtypes: Optional[Dict[str, str]]) -> None:
    """Append every column of ``table`` to the column of the same name, creating missing ones,
    all in one transaction; every field is checked before anything is written."""
    lib = pa()
    if not isinstance(table, lib.Table):
        try:
            table = lib.table(table)
        except (TypeError, lib.ArrowInvalid) as e:
            raise TypeError(
                f"from_arrow takes a pyarrow.Table, a RecordBatch or an Arrow stream, not "
                f"{type(table).__name__} ({e})"
            ) from None
    dtypes = dict(dtypes or {})
    names = table.column_names
    if len(set(names)) != len(names):
        raise InvalidArgument(f"the table has duplicate column names: {names}")
    unknown = set(dtypes) - set(names)
    if unknown:
        raise InvalidArgument(f"dtypes names columns the table does not have: {sorted(unknown)}")
    plan: List[Tuple[str, str, bool, bool]] = []  # name, dtype, exists, packed bytes as they are
    for fld in table.schema:
        name = fld.name
        exists = name in cv
        if exists:
            dtype = cv[name].dtype
            if name in dtypes and canonical_dtype(dtypes[name]) != dtype:
                raise InvalidArgument(
                    f"column {name!r} exists with dtype {dtype}, not {canonical_dtype(dtypes[name])}"
                )
        elif name in dtypes:
            dtype = canonical_dtype(dtypes[name])
        else:
            dtype = dtype_of(fld)
        _no_nulls(table.column(name), name)
        meta = (fld.metadata or {}).get(DTYPE_KEY)
        raw_packed = dtype in _PACKED and meta == dtype.encode() and _accepts(dtype, fld.type)
        plan.append((name, dtype, exists, raw_packed))
    created: List[str] = []
    try:
        with cv.transaction():
            for name, dtype, exists, raw_packed in plan:
                if exists:
                    col = cv[name]
                else:
                    col = cv.create_column(name, dtype)
                    created.append(name)
                if raw_packed:
                    _extend_packed(col, table.column(name))
                else:
                    for chunk in table.column(name).chunks:
                        col.extend(_convert(col, chunk))
    except BaseException:
        # Rolled back: the columns created inside no longer exist.
        with cv._lock:
            for name in created:
                cv._columns.pop(name, None)
        raise


# -- key-value scans -------------------------------------------------------------------------------


def kv_table(
    kv: KVault,
    prefix: Any,
    start: Any,
    end: Any,
    limit: Optional[int],
    reverse: bool,
    decode: bool,
    max_value_bytes: Optional[int],
) -> Any:
    """The scanned pairs as a table of ``key``, ``value`` (and, without ``decode``, ``encoding``)."""
    from ._codec import NAMES
    from .views import Range

    lib = pa()
    if max_value_bytes is not None:
        if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int):
            raise TypeError(f"max_value_bytes must be an int or None, not {type(max_value_bytes).__name__}")
        if max_value_bytes < 0:
            raise InvalidArgument(f"max_value_bytes must be >= 0, not {max_value_bytes}")
    rng = Range(prefix, start, end, limit, reverse)
    native = kv._native
    kv._backend.sync()
    keys_out: List[Any] = []
    values: List[Any] = []
    encodings: List[str] = []
    total = 0
    after: Optional[bytes] = None
    remaining = rng.limit
    while remaining is None or remaining > 0:
        page = 1000 if remaining is None else min(1000, remaining)
        keys, after = native.scan_keys(rng.prefix, rng.start, rng.end, after, page, rng.reverse)
        if not keys:
            break
        if remaining is not None:
            remaining -= len(keys)
        if max_value_bytes is not None:
            # Sizes first, so a huge value is refused before it is read.
            for key in keys:
                meta = native.info(key)
                if meta is not None and meta[0] > max_value_bytes:
                    _too_large(key, meta[0], max_value_bytes)
        for key, stored in zip(keys, native.get_many(keys)):
            if stored is None:  # deleted or expired since the keys were listed
                continue
            encoding, data = stored if type(stored) is tuple else (0, stored)
            if max_value_bytes is not None and len(data) > max_value_bytes:
                _too_large(key, len(data), max_value_bytes)  # grew since its size was read
            keys_out.append(key)
            if decode:
                values.append(kv._backend.value(stored))
            else:
                values.append(data)
                encodings.append(NAMES.get(encoding, f"unknown ({encoding})"))
                total += len(data)
    columns = {"key": _key_array(keys_out)}
    if decode:
        try:
            columns["value"] = lib.array(values)
        except (lib.ArrowInvalid, lib.ArrowTypeError, OverflowError) as e:
            raise InvalidArgument(
                f"pyarrow cannot put these decoded values in one column ({e}); use decode=False for "
                "the stored bytes and their encoding"
            ) from None
    else:
        columns["value"] = lib.array(values, lib.large_binary() if total > OFFSET_LIMIT else lib.binary())
        columns["encoding"] = lib.array(encodings, lib.string()).dictionary_encode()
    return lib.table(columns)


def _too_large(key: Any, size: int, limit: int) -> None:
    raise InvalidArgument(
        f"the value of key {key!r} is {size:,} bytes, more than max_value_bytes={limit:,}: write "
        "large values out as files (`ambervault export FILE DEST_DIR --prefix ...`, or "
        "KVault.get_to_file) or raise max_value_bytes"
    )


def _key_array(keys: List[Any]) -> Any:
    lib = pa()
    kinds = sorted({type(k).__name__ for k in keys})
    if len(kinds) > 1:
        raise InvalidArgument(
            f"keys of different types ({', '.join(kinds)}) cannot share one Arrow column; "
            "narrow the scan with prefix=, start= or end="
        )
    if not keys or kinds == ["str"]:
        return lib.array(keys, lib.string())
    if kinds == ["bytes"]:
        return lib.array(keys, lib.binary())
    try:
        return lib.array([list(k) for k in keys])
    except (lib.ArrowInvalid, lib.ArrowTypeError, OverflowError) as e:
        raise InvalidArgument(
            "tuple keys become an Arrow list column only when all their elements have one type "
            f"that fits Arrow (pyarrow said: {e}); narrow the scan with prefix= or convert the keys"
        ) from None
