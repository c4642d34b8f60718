"""EventLog: an append-only log of typed events stored as columns of a :class:`ColumnVault`.

An event is ``(type, payload, time)``: a ``str`` type, a payload of any typed value (what
:class:`~ambervault.KVault` stores: bytes, str, numbers, lists, dicts, tuples, numpy arrays, ...)
and the time it was appended, read from the vault's clock. Its sequence number (``seq``) is its
0-based position in the log.

The log ``<name>`` is these columns of the vault (see ``docs/events.md``):

==========================  ======  ===========================================================
column                      dtype   element
==========================  ======  ===========================================================
``<name>__type``            u32     the event's type code (its position in ``<name>__types``)
``<name>__time``            i64     the append time, epoch milliseconds from the vault's clock
``<name>__payload``         bytes   one byte of typed-value encoding code, then the encoded bytes
``<name>__types``           str     the type names; a name's position is its code
``<name>__by_type__<code>`` i64     the seqs of that type's events, ascending (the type index)
``<name>__back``            i64     the seqs whose time is earlier than the previous event's
==========================  ======  ===========================================================

Every append writes all of an event's columns in one transaction, so the first three columns
always have the same length; an :class:`EventLog` refuses to open a log whose lengths differ
(:meth:`EventLog.repair` truncates it to its complete events).
"""

from __future__ import annotations

import math
import time as _time
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Set, Tuple

from ._codec import ValueCodec
from .columns import Column, ColumnVault
from .exceptions import ClosedError, CorruptionError, InvalidArgument, NotFound

_PAGE = 1024  # events per round trip when listing
# Listing one type reads a column over the span of a page of its seqs as one range when the
# span is at most this many times the page's events, else one point read per event (a range
# read costs a fraction of a point read per element). Times are 8 bytes, so a wide span is
# cheap; payloads may be large, so their over-read is kept small.
_TIME_SPAN, _PAYLOAD_SPAN = 64, 4
_TYPE, _TIME, _PAYLOAD, _TYPES, _BACK = "__type", "__time", "__payload", "__types", "__back"
_BY_TYPE = "__by_type__"
_DTYPES = {_TYPE: "u32", _TIME: "i64", _PAYLOAD: "bytes", _TYPES: "str", _BACK: "i64"}
_I64_LIMIT = 2**63


class Event(NamedTuple):
    """One event as :meth:`EventLog.list` yields it."""

    seq: int
    type: str
    payload: Any
    time: float


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"event log names must be str, not {type(name).__name__}")
    if not name or len(name.encode("utf-8")) > 512 or "\0" in name or "__" in name:
        raise InvalidArgument(
            f"event log names must be 1-512 bytes of text without NUL or '__' (which separates "
            f"the log's name from its column suffixes), got {name!r}"
        )
    return name


def _check_type(event_type: Any) -> str:
    if not isinstance(event_type, str):
        raise TypeError(f"event types must be str, not {type(event_type).__name__}")
    if not event_type or len(event_type.encode("utf-8")) > 1024:
        raise InvalidArgument(f"event types must be 1-1024 bytes of text, got {event_type!r}")
    return event_type


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of epoch seconds, not {type(value).__name__}")
    if math.isnan(value):
        raise InvalidArgument(f"{name} must be a number of epoch seconds, not nan")
    return float(value)


def _check_bound(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    return value


def _first_true(read: Callable[[int], Any], lo: int, hi: int, pred: Callable[[Any], bool]) -> int:
    """The first ``i`` in ``[lo, hi)`` with ``pred(read(i))`` true (``pred`` false then true
    over the range), or ``hi``; log2(hi - lo) point reads."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(read(mid)):
            hi = mid
        else:
            lo = mid + 1
    return lo


class EventLog:
    """An append-only log of typed events in a :class:`ColumnVault` (created on first use).

    :param columns: the column vault holding the log (a ``ColumnVault(kv)`` shares ``kv``'s file,
        transactions and clock).
    :param name: the log's name: 1-512 bytes of text without ``"__"``.
    :param allow_pickle: read and write payloads wrapped in :class:`~ambervault.Pickle` (as
        ``KVault(allow_pickle=True)``; only for files you trust).

    Appends are durable when they return (each is one transaction over every column of the log;
    inside ``vault.transaction()`` they commit with it). Reads of other processes' appends need no
    reopening.

    >>> log = EventLog(ColumnVault(":memory:"), "audit")
    >>> log.append("login", {"user": "ada"}), log.append("logout", {"user": "ada"})
    (0, 1)
    >>> log.get(0)[:2]
    ('login', {'user': 'ada'})
    >>> [(e.seq, e.payload["user"]) for e in log.list(type="logout")]
    [(1, 'ada')]
    """

    def __init__(self, columns: ColumnVault, name: str, allow_pickle: bool = False) -> None:
        if not isinstance(columns, ColumnVault):
            raise TypeError(f"EventLog takes a ColumnVault, not {type(columns).__name__}")
        self.name = _check_name(name)
        self._cv = columns
        self._codec = ValueCodec(True, allow_pickle)
        self._types: List[str] = []
        self._codes: Dict[str, int] = {}
        self._provisional = False
        # Type index columns by code; only columns known to be committed are kept here.
        self._by_type: Dict[int, Column] = {}
        self._open(check=True)

    # -- opening -------------------------------------------------------------------------------
    def _col_name(self, suffix: str) -> str:
        return self.name + suffix

    def _open(self, check: bool) -> None:
        """Find (or create) the log's columns; with ``check``, refuse a log whose columns have
        different lengths."""
        cv = self._cv
        prefix = self.name + "__"
        found = {n: (d, length) for n, d, length in cv.list_columns() if n.startswith(prefix)}
        base = {self._col_name(s): d for s, d in _DTYPES.items()}
        for col, dtype in base.items():
            if col in found and found[col][0] != dtype:
                raise InvalidArgument(
                    f"column {col!r} exists with dtype {found[col][0]}, not {dtype}: "
                    f"{self.name!r} is not an event log"
                )
        if not all(col in found for col in base):
            if any(col in found for col in base if not col.endswith(_BACK)):
                missing = sorted(col for col in base if col not in found)
                raise CorruptionError(f"event log {self.name!r} is missing columns {missing}")
            if cv._file.read_only:
                raise NotFound(f"event log {self.name!r}")
            with cv.transaction():  # one transaction: a log exists completely or not at all
                for col, dtype in base.items():
                    cv.ensure(col, dtype)
                # Created inside the caller's transaction: if it rolls back, the handles below
                # name columns that do not exist (and whose ids a later column may take).
                self._provisional = cv._file.native.transaction_depth() > 1
        else:
            self._provisional = cv._file.native.transaction_depth() > 0 and self._provisional
        self._type_col = self._fresh(self._col_name(_TYPE))
        self._time_col = self._fresh(self._col_name(_TIME))
        self._payload_col = self._fresh(self._col_name(_PAYLOAD))
        self._types_col = self._fresh(self._col_name(_TYPES))
        self._back_col = self._fresh(self._col_name(_BACK))
        self._by_type = {}
        self._reload_types()
        if check:
            problems = self._length_problems(found)
            if problems:
                raise CorruptionError(
                    f"event log {self.name!r} is damaged: {'; '.join(problems)}. "
                    f"EventLog.repair(columns, {self.name!r}) keeps its complete events"
                )

    def _length_problems(self, found: Dict[str, Tuple[str, int]]) -> List[str]:
        """The column lengths that do not agree, from one listing of the columns."""
        lengths = {s: found.get(self._col_name(s), ("", 0))[1] for s in (_TYPE, _TIME, _PAYLOAD)}
        problems = []
        if len(set(lengths.values())) > 1:
            problems.append(
                "columns of different lengths (" + ", ".join(f"{s[2:]} {n}" for s, n in lengths.items()) + ")"
            )
        prefix = self._col_name(_BY_TYPE)
        indexed = sum(length for n, (_, length) in found.items() if n.startswith(prefix))
        if indexed != lengths[_TYPE]:
            problems.append(f"the type index holds {indexed} events, the log {lengths[_TYPE]}")
        return problems

    def _live(self) -> None:
        """Raise :class:`ClosedError` when the vault file is closed (through any table on it)."""
        self._cv._native  # noqa: B018 - raises ClosedError when the column vault is closed
        if self._cv._file.closed:
            raise ClosedError("vault is closed")
        if self._provisional and self._cv._file.native.transaction_depth() == 0:
            self._open(check=True)  # that transaction ended: find (or create) the columns again

    def _fresh(self, name: str) -> Column:
        """The column ``name`` looked up in the file now (never a handle kept from a rolled-back
        transaction)."""
        core = self._cv._native.find(name)
        if core is None:
            raise NotFound(name)
        return self._cv._wrap(core, name)

    def _reload_types(self) -> None:
        self._types = list(self._types_col._core.get_range(None, None))
        self._codes = {t: i for i, t in enumerate(self._types)}

    # -- writing -------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        clock = self._cv._file.clock
        now = clock() if clock is not None else _time.time()
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise InvalidArgument(f"the vault's clock returned {now!r}, not a finite number of seconds")
        ms = int(now * 1000)
        if not -_I64_LIMIT <= ms < _I64_LIMIT:
            raise InvalidArgument(f"the vault's clock returned {now!r}, beyond the range of event times")
        return ms

    def _encode(self, payload: Any) -> bytes:
        data, code = self._codec.encode(payload)
        return bytes((code,)) + bytes(data)

    def append(self, type: str, payload: Any = None) -> int:
        """Append one event; returns its seq. The payload is encoded first: one that cannot be
        stored raises ``TypeError``/``ValueError`` and nothing is written.

        >>> log = EventLog(ColumnVault(":memory:"), "e"); log.append("start", [1, 2])
        0
        """
        return self._append_all([(_check_type(type), self._encode(payload))])

    def extend(self, events: Iterable[Tuple[str, Any]]) -> range:
        """Append ``(type, payload)`` pairs in one transaction, all with one time; returns their
        seqs. Every pair is checked and encoded first: one bad pair writes nothing.

        >>> log = EventLog(ColumnVault(":memory:"), "e"); log.extend([("a", 1), ("b", 2)])
        range(0, 2)
        """
        items = []
        for pair in events:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(f"extend takes (type, payload) pairs, not {pair!r}")
            items.append((_check_type(pair[0]), self._encode(pair[1])))
        if not items:
            n = len(self)
            return range(n, n)
        first = self._append_all(items)
        return range(first, first + len(items))

    def _append_all(self, items: List[Tuple[str, bytes]]) -> int:
        self._live()
        ms = self._now_ms()
        try:
            return self._write(items, ms)
        except NotFound:
            # A column handle from a transaction that was rolled back (e.g. the log was created
            # inside one): find the columns again and retry once.
            self._open(check=True)
            return self._write(items, ms)

    def _write(self, items: List[Tuple[str, bytes]], ms: int) -> int:
        file = self._cv._file
        created: Dict[int, Column] = {}
        with self._cv.transaction():
            outermost = file.native.transaction_depth() == 1
            n = self._type_col._core.len()
            lengths = (self._time_col._core.len(), self._payload_col._core.len())
            if lengths != (n, n):
                raise CorruptionError(
                    f"event log {self.name!r} has columns of different lengths (type {n}, time "
                    f"{lengths[0]}, payload {lengths[1]}): nothing appended. "
                    f"EventLog.repair(columns, {self.name!r}) keeps its complete events"
                )
            by_code: Dict[int, List[int]] = {}
            codes = []
            for offset, (event_type, _) in enumerate(items):
                code = self._code_in_txn(event_type, created)
                codes.append(code)
                by_code.setdefault(code, []).append(n + offset)
            self._type_col._core.extend(codes)
            self._time_col._core.extend([ms] * len(items))
            self._payload_col._core.extend([blob for _, blob in items])
            if n and ms < self._time_col._core.get(n - 1):
                self._back_col._core.append(n)  # the clock went backwards: a new run starts
            for code, seqs in by_code.items():
                col = created.get(code) or self._index_col(code, outermost)
                col._core.extend(seqs)
        if outermost:
            # Committed: columns created in this transaction are safe to keep.
            self._by_type.update(created)
        return n

    def _code_in_txn(self, event_type: str, created: Dict[int, Column]) -> int:
        """The code of ``event_type``, registered (with its index column) if new. The kept
        type table is checked against the file, so a table changed by another process or left
        over from a rolled-back transaction is reloaded."""
        code = self._codes.get(event_type)
        if code is not None:
            try:
                if self._types_col._core.get(code) == event_type:
                    return code
            except IndexError:
                pass
        self._reload_types()
        code = self._codes.get(event_type)
        if code is not None:
            return code
        code = len(self._types)
        self._types_col._core.append(event_type)
        self._types.append(event_type)
        self._codes[event_type] = code
        name = self._col_name(f"{_BY_TYPE}{code}")
        core = self._cv._native.find(name)
        if core is not None:  # left by a damaged log: an index column must start empty
            raise CorruptionError(
                f"event log {self.name!r}: type index column {name!r} exists for a new type"
            )
        created[code] = self._cv.create_column(name, "i64")
        return code

    def _index_col(self, code: int, keep: bool) -> Column:
        col = self._by_type.get(code)
        if col is None:
            col = self._fresh(self._col_name(f"{_BY_TYPE}{code}"))
            if keep:
                self._by_type[code] = col
        return col

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of events."""
        self._live()
        return self._type_col._core.len()

    def __repr__(self) -> str:
        return f"<ambervault.EventLog {self.name!r} in {self._cv.path!r}>"

    def types(self) -> List[str]:
        """The event types appended so far, in order of first appearance."""
        self._live()
        self._reload_types()
        return list(self._types)

    def count(self, type: str) -> int:
        """Number of events of ``type`` (read from the type index, no scan)."""
        self._live()
        code = self._code_of(_check_type(type))
        return 0 if code is None else self._index_len(code)[1]

    def _index_len(self, code: int) -> Tuple[Any, int]:
        """The native index column of ``code`` and its length; a kept handle of a column that
        was dropped (by :meth:`repair` through another object) is replaced."""
        # A column found inside an open transaction may be rolled back with it: not kept then.
        keep = self._cv._file.native.transaction_depth() == 0
        try:
            index = self._index_col(code, keep)._core
            return index, index.len()
        except NotFound:
            self._by_type.pop(code, None)
            index = self._index_col(code, keep=False)._core
            return index, index.len()

    def _code_of(self, event_type: str) -> Optional[int]:
        """The code of ``event_type`` in the file, or None. The kept table is checked against
        the file (it may hold a type registered in a transaction that was rolled back)."""
        code = self._codes.get(event_type)
        if code is not None:
            try:
                if self._types_col._core.get(code) == event_type:
                    return code
            except IndexError:
                pass
        self._reload_types()
        return self._codes.get(event_type)

    def _type_name(self, code: int, verified: Set[int]) -> str:
        """The name of type ``code``, read from the file once per call of a public method
        (``verified`` holds the codes read already)."""
        if code not in verified:
            try:
                name = self._types_col._core.get(code)
            except IndexError:
                raise CorruptionError(f"event log {self.name!r}: unknown type code {code}") from None
            if code >= len(self._types) or self._types[code] != name:
                self._reload_types()
            verified.add(code)
        return self._types[code]

    def _decode(self, blob: bytes) -> Any:
        if not blob:
            raise CorruptionError(f"event log {self.name!r}: an empty payload element")
        return self._codec.decode(blob[0], blob[1:])

    def get(self, seq: int) -> Tuple[str, Any, float]:
        """``(type, payload, time)`` of event ``seq`` (negative counts from the end, as for a
        list); ``time`` is epoch seconds. ``IndexError`` when out of range.

        >>> log = EventLog(ColumnVault(":memory:"), "e"); log.append("a", b"x")
        0
        >>> log.get(-1)[:2]
        ('a', b'x')
        """
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError(f"seq must be an int, not {type(seq).__name__}")
        n = len(self)  # (checks the vault is open)
        i = seq + n if seq < 0 else seq
        if not 0 <= i < n:
            raise IndexError(f"event seq out of range (seq {seq}, {n} events)")
        code = self._type_col._core.get(i)
        ms = self._time_col._core.get(i)
        return self._type_name(code, set()), self._decode(self._payload_col._core.get(i)), ms / 1000

    def __iter__(self) -> Iterator[Event]:
        return self.list()

    def list(
        self,
        type: Optional[str] = None,
        start: Optional[int] = None,
        end: Optional[int] = None,
        since_time: Optional[float] = None,
    ) -> Iterator[Event]:
        """The events with seq in ``[start, end)`` (slice rules: ``None`` for the ends, negative
        from the end), of ``type`` if given, appended at ``since_time`` (epoch seconds) or later,
        in seq order, as :class:`Event` ``(seq, type, payload, time)`` tuples.

        Streamed: events are read 1,024 at a time, so memory stays constant however long the
        log. It covers the events present when iteration starts. With ``type``, only that
        type's events are read (through the type index); ``since_time`` is found by binary
        search on the time column (see ``docs/events.md`` for a clock that goes backwards).

        >>> log = EventLog(ColumnVault(":memory:"), "e"); log.extend([("a", 1), ("b", 2), ("a", 3)])
        range(0, 3)
        >>> [e.payload for e in log.list(type="a")], [e.seq for e in log.list(start=-2)]
        ([1, 3], [1, 2])
        """
        if type is not None:
            _check_type(type)
        lo_arg, hi_arg = _check_bound("start", start), _check_bound("end", end)
        since = None if since_time is None else _check_seconds("since_time", since_time)
        self._live()  # raises ClosedError now, not at the first next()
        return self._events(type, lo_arg, hi_arg, since)

    def _events(
        self,
        event_type: Optional[str],
        start: Optional[int],
        end: Optional[int],
        since: Optional[float],
    ) -> Iterator[Event]:
        n = len(self)
        lo, hi, _ = slice(start, end).indices(n)
        code: Optional[int] = None
        if event_type is not None:
            code = self._code_of(event_type)
            if code is None:
                return
        intervals = [(lo, hi)] if since is None else self._since(since, lo, hi)
        for a, b in intervals:
            if a >= b:
                continue
            if code is None:
                yield from self._range(a, b)
            else:
                yield from self._typed(code, a, b)

    def _since(self, since: float, lo: int, hi: int) -> Iterator[Tuple[int, int]]:
        """Seq intervals inside ``[lo, hi)`` whose events have ``time >= since``: in each run of
        nondecreasing times (runs start at the seqs of the ``back`` column), a binary search
        finds where they begin."""
        since_pred: Callable[[int], bool] = lambda ms: ms / 1000 >= since  # noqa: E731
        read = self._time_col._core.get
        run_start = 0
        for boundary in self._boundaries(hi):
            a, b = max(run_start, lo), min(boundary, hi)
            if a < b:
                yield _first_true(read, a, b, since_pred), b
            run_start = boundary

    def _boundaries(self, hi: int) -> Iterator[int]:
        """Ends of the runs of nondecreasing times up to ``hi`` (the last one is ``hi``)."""
        core = self._back_col._core
        at = 0
        while True:
            page = core.get_range(at, at + _PAGE)
            for seq in page:
                if seq >= hi:
                    yield hi
                    return
                yield seq
            if len(page) < _PAGE:
                yield hi
                return
            at += _PAGE

    def _range(self, a: int, b: int) -> Iterator[Event]:
        types, times, payloads = self._type_col._core, self._time_col._core, self._payload_col._core
        verified: Set[int] = set()
        for at in range(a, b, _PAGE):
            stop = min(at + _PAGE, b)
            codes = types.get_range(at, stop)
            ms = times.get_range(at, stop)
            blobs = payloads.get_range(at, stop)
            for i, (c, t, blob) in enumerate(zip(codes, ms, blobs)):
                yield Event(at + i, self._type_name(c, verified), self._decode(blob), t / 1000)

    def _typed(self, code: int, a: int, b: int) -> Iterator[Event]:
        index, count = self._index_len(code)
        first = _first_true(index.get, 0, count, lambda s: s >= a)
        last = _first_true(index.get, first, count, lambda s: s >= b)
        name = self._type_name(code, set())
        for at in range(first, last, _PAGE):
            seqs = index.get_range(at, min(at + _PAGE, last))
            times, blobs = self._gather(seqs)
            for seq, t, blob in zip(seqs, times, blobs):
                yield Event(seq, name, self._decode(blob), t / 1000)

    def _gather(self, seqs: List[int]) -> Tuple[List[int], List[bytes]]:
        """Times and payloads of ``seqs`` (ascending): each column read as one range over the
        span of ``seqs`` when that span is small enough (times are 8 bytes, so a wider span is
        worth it), else one point read per event. Spans are bounded, so memory stays so."""
        lo, hi = seqs[0], seqs[-1] + 1
        return (
            self._pick(self._time_col._core, seqs, lo, hi, _TIME_SPAN),
            self._pick(self._payload_col._core, seqs, lo, hi, _PAYLOAD_SPAN),
        )

    @staticmethod
    def _pick(core: Any, seqs: List[int], lo: int, hi: int, span: int) -> List[Any]:
        if hi - lo <= span * len(seqs):
            values = core.get_range(lo, hi)
            return [values[s - lo] for s in seqs]
        return [core.get(s) for s in seqs]

    # -- integrity -----------------------------------------------------------------------------
    def check(self) -> List[str]:
        """Every inconsistency of the log, as text (empty when healthy): column lengths, the
        type index (each type's seqs, ascending, pointing at events of that type, and every
        event indexed), the record of backward clock steps, and the payload encodings. Reads
        the whole log, in pages."""
        problems = self._length_problems(
            {n: (d, length) for n, d, length in self._cv.list_columns() if n.startswith(self.name + "__")}
        )
        if problems:
            return problems
        self._reload_types()
        n = len(self)
        counts: Dict[int, int] = {}
        back: List[int] = []
        prev: Optional[int] = None
        for at in range(0, n, _PAGE):
            codes = self._type_col._core.get_range(at, at + _PAGE)
            ms = self._time_col._core.get_range(at, at + _PAGE)
            for i, (c, t) in enumerate(zip(codes, ms)):
                if c >= len(self._types):
                    problems.append(f"event {at + i} has unknown type code {c}")
                counts[c] = counts.get(c, 0) + 1
                if prev is not None and t < prev:
                    back.append(at + i)
                prev = t
            for i, blob in enumerate(self._payload_col._core.get_range(at, at + _PAGE)):
                if not blob or blob[0] > 6:
                    problems.append(f"event {at + i} has a payload of unknown encoding")
        stored_back = list(self._back_col._core.get_range(None, None))
        if stored_back != back:
            problems.append(f"backward clock steps recorded at {stored_back[:10]}, found at {back[:10]}")
        for code in range(len(self._types)):
            try:
                index = self._fresh(self._col_name(f"{_BY_TYPE}{code}"))._core
            except NotFound:
                problems.append(f"type {self._types[code]!r} has no index column")
                continue
            if index.len() != counts.get(code, 0):
                problems.append(
                    f"type {self._types[code]!r}: index holds {index.len()} seqs, log {counts.get(code, 0)}"
                )
            last = -1
            for at in range(0, index.len(), _PAGE):
                seqs = index.get_range(at, at + _PAGE)
                if any(s <= p for p, s in zip([last, *seqs], seqs)) or seqs[-1] >= n:
                    problems.append(f"type {self._types[code]!r}: index not ascending or beyond the log")
                    break
                found = self._type_col._core
                if any(found.get(s) != code for s in seqs):
                    problems.append(f"type {self._types[code]!r}: index points at events of other types")
                    break
                last = seqs[-1]
        return problems

    @classmethod
    def repair(cls, columns: ColumnVault, name: str) -> int:
        """Make a damaged log consistent, in one transaction: its type, time and payload columns
        are cut to the length of the shortest (events whose columns are not all present are
        dropped), and the type index and the record of backward clock steps are rebuilt from
        them. Returns the number of events kept.

        Appends never leave a log damaged (each is one transaction); this repairs logs whose
        columns were changed directly.
        """
        log = cls.__new__(cls)
        log.name = _check_name(name)
        log._cv = columns
        log._codec = ValueCodec(True, False)
        log._provisional = False
        log._open(check=False)
        with columns.transaction():
            cores = (log._type_col._core, log._time_col._core, log._payload_col._core)
            n = min(core.len() for core in cores)
            for core in cores:
                if core.len() > n:
                    core.delete_range(n, core.len())
            log._reload_types()
            prefix = log._col_name(_BY_TYPE)
            for col_name, _, _ in columns.list_columns():
                if col_name.startswith(prefix):
                    columns.delete_column(col_name)
            log._by_type = {}
            back = log._back_col._core
            back.delete_range(0, back.len())
            indexes = [columns.create_column(f"{prefix}{code}", "i64") for code in range(len(log._types))]
            prev: Optional[int] = None
            for at in range(0, n, _PAGE):
                codes = log._type_col._core.get_range(at, at + _PAGE)
                by_code: Dict[int, List[int]] = {}
                for i, c in enumerate(codes):
                    if c >= len(indexes):
                        raise CorruptionError(f"event {at + i} has unknown type code {c}; cannot repair")
                    by_code.setdefault(c, []).append(at + i)
                for c, seqs in by_code.items():
                    indexes[c]._core.extend(seqs)
                steps = []
                for i, t in enumerate(log._time_col._core.get_range(at, at + _PAGE)):
                    if prev is not None and t < prev:
                        steps.append(at + i)
                    prev = t
                if steps:
                    back.extend(steps)
        return n
