"""The child side of a fuzz case: open a (damaged) vault file, read everything, write a little,
run ``check()``, and print one JSON report on stdout.

Run as ``python -m hostile_files.probe SPEC.json`` with ``scripts/`` on ``sys.path``. Every
call is guarded separately, so one refused key does not hide what the others return. Values are
reported as fingerprints (a hash of their type and content), so the parent can compare them
with the seed's without shipping the values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import ambervault
from ambervault import VaultError

#: A read that found no value (distinct from every fingerprint).
ABSENT = "absent"
#: Bytes read per step when a chunked value is streamed.
STREAM_STEP = 100


#: Types whose ``repr`` states their exact value.
_PLAIN = frozenset((int, float, bool, str, bytes, type(None)))


def fingerprint(value: Any) -> str:
    """A short hash of ``value``'s type and content: equal values of the same types agree."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return "v:" + digest.hexdigest()[:20]


def _feed(digest: Any, value: Any) -> None:
    digest.update(type(value).__name__.encode() + b"\x00")
    if isinstance(value, (bytes, bytearray, memoryview)):
        digest.update(bytes(value))
    elif isinstance(value, str):
        digest.update(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, (list, tuple)) and set(map(type, value)) <= _PLAIN:
        # Why: a column slice holds thousands of elements; repr is exact for these types
        # (floats round-trip, True is not 1) and runs in C.
        digest.update(repr(value).encode("utf-8", "surrogatepass"))
    elif isinstance(value, (list, tuple)):
        digest.update(str(len(value)).encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, dict):
        digest.update(str(len(value)).encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (dt.date, dt.datetime)):
        digest.update(value.isoformat().encode())
    elif hasattr(value, "dtype") and hasattr(value, "tobytes"):  # numpy arrays and scalars
        digest.update(f"{value.dtype.str}{getattr(value, 'shape', ())}".encode())
        if value.dtype.hasobject:  # the bytes of an object array are pointers
            _feed(digest, value.tolist())
        else:
            digest.update(value.tobytes())
    else:
        digest.update(repr(value).encode())
    digest.update(b"\x01")


def key_to_json(key: Any) -> Any:
    """A key as JSON: ``["s", text]``, ``["b", hex]``, ``["i", int]`` or ``["t", [items]]``."""
    if isinstance(key, str):
        return ["s", key]
    if isinstance(key, bytes):
        return ["b", key.hex()]
    if isinstance(key, int):
        return ["i", str(key)]
    if isinstance(key, tuple):
        return ["t", [key_to_json(item) for item in key]]
    return ["r", repr(key)]


def key_from_json(data: Any) -> Any:
    """The key :func:`key_to_json` described."""
    kind, body = data
    if kind == "s":
        return body
    if kind == "b":
        return bytes.fromhex(body)
    if kind == "i":
        return int(body)
    if kind == "t":
        return tuple(key_from_json(item) for item in body)
    raise ValueError(f"unknown key kind {kind!r}")


class Report:
    """What the child saw: observations (label -> fingerprint, ``absent`` or ``e:<error>``),
    every exception raised, the check results and the write read-backs that came back wrong."""

    def __init__(self) -> None:
        self.observations: Dict[str, str] = {}
        self.errors: List[Dict[str, Any]] = []
        self.check: Optional[List[str]] = None
        self.check_after_writes: Optional[List[str]] = None
        self.readback_wrong: List[str] = []
        self.keys: Dict[str, List[Any]] = {}
        self.stage = "start"

    def guard(self, label: str, call: Callable[..., Any], *args: Any) -> Tuple[bool, Any]:
        """Run ``call(*args)``; on an exception record it under ``label`` and return
        ``(False, None)``."""
        try:
            return True, call(*args)
        except BaseException as exc:  # a PanicException is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self.errors.append(
                {
                    "label": label,
                    "type": type(exc).__name__,
                    "module": type(exc).__module__,
                    "typed": isinstance(exc, VaultError),
                    "message": str(exc)[:300],
                    "where": traceback.format_exc(limit=-3)[-600:],
                }
            )
            self.observations[label] = f"e:{type(exc).__name__}"
            return False, None

    def observe(self, label: str, call: Callable[..., Any], *args: Any) -> Any:
        """Record the fingerprint of what ``call(*args)`` returns (or its error) under ``label``."""
        ok, value = self.guard(label, call, *args)
        if ok:
            self.observations[label] = fingerprint(value)
        return value

    def to_json(self) -> Dict[str, Any]:
        """The report as a JSON-ready dict."""
        return dict(vars(self))


_MISSING = object()


def _read_table(report: Report, kv: ambervault.KVault, table: str, expected: List[Any]) -> None:
    listed = report.observe(f"{table}|keys", _keys, kv)
    keys: List[Any] = list(listed or [])
    report.keys[table] = [key_to_json(k) for k in keys]
    known = {json.dumps(key_to_json(k)) for k in keys}
    keys += [key_from_json(k) for k in expected if json.dumps(k) not in known]
    for key in keys:
        label = f"{table}|{json.dumps(key_to_json(key))}"
        ok, value = report.guard(label, kv.get, key, _MISSING)
        if not ok:
            continue
        report.observations[label] = ABSENT if value is _MISSING else fingerprint(value)
        if isinstance(value, bytes) and len(value) > kv.chunk_size:
            report.observe(label + "|stream", _stream, kv, key)
        report.observe(label + "|history", kv.history, key)
        report.observe(label + "|info", _info, kv, key)


def _keys(kv: ambervault.KVault) -> List[Any]:
    return list(kv.keys())


def _last(column: ambervault.Column) -> Any:
    return column[-1] if len(column) else None


def _open_table(path: str, table: Dict[str, Any]) -> ambervault.KVault:
    return ambervault.KVault(path, table=table["name"], chunk_size=table["chunk_size"])


def _stream(kv: ambervault.KVault, key: Any) -> bytes:
    """The value read through a seekable reader: a read from the middle, then the whole."""
    with kv.open(key) as reader:
        reader.seek(STREAM_STEP + 3)
        middle: bytes = reader.read(STREAM_STEP)
        reader.seek(0)
        whole = b""
        while True:
            piece = reader.read(STREAM_STEP)
            if not piece:
                break
            whole += piece
    if whole[STREAM_STEP + 3 : 2 * STREAM_STEP + 3] != middle:
        return b"seek read disagrees: " + middle
    return whole


def _info(kv: ambervault.KVault, key: Any) -> Any:
    info = kv.info(key)
    if info is None:
        return None
    # Times are the stored ones; what a damaged row can get wrong is in these fields.
    return {name: info.get(name) for name in sorted(info)}


def _read_columns(report: Report, cv: ambervault.ColumnVault) -> Dict[str, List[Any]]:
    """Every element of every column; returns the values of the columns read whole."""
    read: Dict[str, List[Any]] = {}
    listed = report.observe("columns|list", cv.list_columns)
    for name, _dtype, _length in listed or []:
        ok, column = report.guard(f"col|{name}|open", cv.__getitem__, name)
        if not ok:
            continue
        values = report.observe(f"col|{name}", column.__getitem__, slice(None))
        if values is not None:
            read[name] = values
        report.observe(f"col|{name}|last", _last, column)
        report.observe(f"col|{name}|iter", list, column)
        report.observe(f"col|{name}|numpy", column.to_numpy)
    return read


def _write_table(report: Report, kv: ambervault.KVault, table: str) -> None:
    chunked = bytes(range(256)) * (kv.chunk_size // 256 + 2) + b"tail"
    writes: Dict[str, Any] = {"fuzz-inline": b"small", "fuzz-chunked": chunked, "fuzz-typed": {"x": (1, 2)}}
    keys = report.keys.get(table) or []
    if keys:  # overwrite one existing key as well
        writes[json.dumps(keys[0])] = b"overwritten"
    for name, value in writes.items():
        key = key_from_json(json.loads(name)) if name.startswith("[") else name
        ok, _ = report.guard(f"{table}|write|{name}", kv.put, key, value)
        if not ok:
            continue
        ok, back = report.guard(f"{table}|readback|{name}", kv.get, key, _MISSING)
        if ok and fingerprint(back) != fingerprint(value):
            report.readback_wrong.append(f"{table}|{name}")


def _write_columns(report: Report, cv: ambervault.ColumnVault, read: Dict[str, List[Any]]) -> None:
    for name, values in read.items():
        if not values:
            continue
        value = values[0]

        def append_and_read(name: str = name, value: Any = value) -> Any:
            column = cv[name]
            column.append(value)
            return column[-1]

        ok, back = report.guard(f"col|{name}|append", append_and_read)
        if ok and fingerprint(back) != fingerprint(value):
            report.readback_wrong.append(f"col|{name}")


def _check_all(
    report: Report, vaults: List[Tuple[str, ambervault.KVault]], label: str
) -> Optional[List[str]]:
    """Every table's ``check()`` problems (``None`` if one of them raised).

    Why every table: a vault's ``check()`` covers the file's columns and the tables opened
    through *its* file handle, not every table in the file."""
    problems: List[str] = []
    for name, kv in vaults:
        ok, found = report.guard(f"{label}|{name}", kv.check)
        if not ok:
            return None
        problems += [p for p in found if p not in problems]
    return problems


def run(spec: Dict[str, Any]) -> Report:
    """Open, read, check, write and check again the file ``spec`` names (see ``campaign``)."""
    report = Report()
    vaults: List[Tuple[str, ambervault.KVault]] = []
    for table in spec["tables"]:
        name = table["name"]
        report.stage = f"open {name}"
        ok, kv = report.guard(
            f"{name}|open",
            _open_table,
            spec["path"],
            table,
        )
        if ok:
            vaults.append((name, kv))
    cv: Optional[ambervault.ColumnVault] = None
    columns: Dict[str, List[Any]] = {}
    if spec["has_columns"] and vaults:
        report.stage = "open columns"
        ok, cv = report.guard("columns|open", ambervault.ColumnVault, vaults[0][1])
    for name, kv in vaults:
        report.stage = f"read {name}"
        _read_table(report, kv, name, spec.get("expected_keys", {}).get(name, []))
    if cv is not None:
        report.stage = "read columns"
        columns = _read_columns(report, cv)
    if vaults:
        report.stage = "check"
        report.check = _check_all(report, vaults, "check")
        for name, kv in vaults:
            report.stage = f"write {name}"
            _write_table(report, kv, name)
        if cv is not None:
            report.stage = "write columns"
            _write_columns(report, cv, columns)
        report.stage = "check after writes"
        report.check_after_writes = _check_all(report, vaults, "check-after")
        report.stage = "close"
        for name, kv in vaults:
            report.guard(f"{name}|close", kv.close)
    report.stage = "done"
    return report


def main() -> None:
    """Read the spec named on the command line, run it, print the report as one JSON line."""
    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    report = run(spec)
    sys.stdout.write(json.dumps(report.to_json()) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
