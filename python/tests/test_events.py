"""EventLog: typed payloads round-trip, a model-based test against a list of events (appends,
batches, a clock that steps forwards and backwards, listing by type, seq range and time,
reopening), lookups by type and time that read only what they return, atomic appends under
rollbacks and across processes, bad input refused with nothing changed, and damaged logs
refused on open and repaired."""

from __future__ import annotations

import datetime
import os
import tempfile

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ambervault import ColumnVault, CorruptionError, EventLog, InvalidArgument, KVault, NotFound, Pickle
from helpers import same_value


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_log(path, clock=None, name="log"):
    kv = KVault(path, clock=clock)
    cv = ColumnVault(kv)
    return kv, cv, EventLog(cv, name)


# -- round trips ----------------------------------------------------------------------------------

PAYLOADS = [
    None,
    0,
    -(2**70),
    1.5,
    float("-inf"),
    "text é",
    b"\x00raw",
    [1, [2, "x"]],
    (1, ("a", None)),
    {"user": "ada", "n": 3, "nested": {"k": [1.0]}},
    {1: "int key"},
    datetime.date(2024, 1, 2),
]


def test_typed_payloads_round_trip(db_path):
    kv, cv, log = open_log(db_path)
    for p in PAYLOADS:
        log.append("t", p)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    log.append("arr", arr)
    log.append("scalar", np.int16(7))
    log.append("mixed", {"emb": np.ones(2), "id": 1})
    kv.close()
    kv, cv, log = open_log(db_path)
    for i, p in enumerate(PAYLOADS):
        etype, payload, _ = log.get(i)
        assert etype == "t" and same_value(payload, p), (p, payload)
    got = log.get(len(PAYLOADS))[1]
    assert got.dtype == np.float32 and got.shape == (3, 4) and (got == arr).all()
    scalar = log.get(-2)[1]
    assert type(scalar) is np.int16 and scalar == 7
    mixed = log.get(-1)[1]
    assert mixed["id"] == 1 and (mixed["emb"] == np.ones(2)).all()
    assert [e.seq for e in log.list()] == list(range(len(log)))
    assert log.check() == [] and cv.check() == []
    kv.close()


def test_times_come_from_the_vaults_clock(db_path):
    clock = Clock(1000.25)
    kv, _cv, log = open_log(db_path, clock)
    log.append("a")
    clock.now = 2000.5
    log.extend([("b", 1), ("c", 2)])
    assert [log.get(i)[2] for i in range(3)] == [1000.25, 2000.5, 2000.5]
    assert [e.time for e in log.list(since_time=2000.5)] == [2000.5, 2000.5]
    kv.close()


def test_pickle_payloads_need_allow_pickle():
    cv = ColumnVault(":memory:")
    with pytest.raises(TypeError, match="allow_pickle"):
        EventLog(cv, "p").append("t", Pickle(object))
    assert len(EventLog(cv, "p")) == 0
    log = EventLog(cv, "p", allow_pickle=True)
    log.append("t", Pickle({1, 2}))
    assert log.get(0)[1] == {1, 2}
    with pytest.raises(TypeError, match="allow_pickle"):
        EventLog(cv, "p").get(0)


# -- model-based ----------------------------------------------------------------------------------

TYPES = st.sampled_from(["a", "b", "c", "long type name é", "d"])
PAYLOAD = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
BOUND = st.none() | st.integers(-30, 30)


class EventLogMachine(RuleBasedStateMachine):
    """The log against a list of ``(type, payload, time_ms)``; the clock moves both ways."""

    @initialize()
    def setup(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "e.db")
        self.clock = Clock(1_700_000_000.0)
        self.kv, self.cv, self.log = open_log(self.path, self.clock)
        self.model = []

    def teardown(self):
        try:
            assert self.log.check() == []
            assert self.cv.check() == []
        finally:
            self.kv.close()
            self.dir.cleanup()

    def now_ms(self):
        return int(self.clock.now * 1000)

    @rule(etype=TYPES, payload=PAYLOAD)
    def append(self, etype, payload):
        assert self.log.append(etype, payload) == len(self.model)
        self.model.append((etype, payload, self.now_ms()))

    @rule(events=st.lists(st.tuples(TYPES, PAYLOAD), max_size=5))
    def extend(self, events):
        seqs = self.log.extend(events)
        assert seqs == range(len(self.model), len(self.model) + len(events))
        self.model.extend((t, p, self.now_ms()) for t, p in events)

    @rule(seconds=st.sampled_from([0.0, 0.001, 0.5, 3.0, -0.002, -2.0, -100.0]))
    def tick(self, seconds):
        self.clock.now += seconds

    @rule(seq=st.integers(-40, 40))
    def get(self, seq):
        n = len(self.model)
        if -n <= seq < n:
            etype, payload, ms = self.model[seq]
            got = self.log.get(seq)
            assert got[0] == etype and same_value(got[1], payload) and got[2] == ms / 1000
        else:
            with pytest.raises(IndexError):
                self.log.get(seq)

    @rule(
        etype=st.none() | TYPES | st.just("never"),
        start=BOUND,
        end=BOUND,
        since=st.none() | st.sampled_from([-1.0, 0.0, 0.4, 0.5, 1.0, 2.9995, 3.0, 5.0, 100.0]),
    )
    def list_events(self, etype, start, end, since):
        since_time = None
        if since is not None:
            # Relative to the first event's time, so the bound falls among the events.
            base = self.model[0][2] / 1000 if self.model else self.clock.now
            since_time = base + since
        lo, hi, _ = slice(start, end).indices(len(self.model))
        want = [
            (seq, t, p, ms / 1000)
            for seq, (t, p, ms) in enumerate(self.model)
            if lo <= seq < hi
            and (etype is None or t == etype)
            and (since_time is None or ms / 1000 >= since_time)
        ]
        got = list(self.log.list(type=etype, start=start, end=end, since_time=since_time))
        assert [(e.seq, e.type, e.time) for e in got] == [(s, t, ms) for s, t, _, ms in want]
        assert all(same_value(e.payload, w[2]) for e, w in zip(got, want))

    @rule()
    def reopen(self):
        self.kv.close()
        self.kv, self.cv, self.log = open_log(self.path, self.clock)

    @rule(etype=TYPES)
    def rolled_back_append(self, etype):
        with pytest.raises(RuntimeError), self.kv.transaction():
            self.log.append(etype, "gone")
            raise RuntimeError

    @invariant()
    def lengths(self):
        if not hasattr(self, "log"):
            return
        assert len(self.log) == len(self.model)
        for t in ("a", "d"):
            assert self.log.count(t) == sum(1 for m in self.model if m[0] == t)


TestEventLogModel = EventLogMachine.TestCase


# -- reads touch only what they return ------------------------------------------------------------


class Spy:
    """Wraps a native column and counts the elements its reads return."""

    def __init__(self, core):
        self.core = core
        self.elements = 0
        self.calls = 0

    def get(self, i):
        self.calls += 1
        self.elements += 1
        return self.core.get(i)

    def get_range(self, start=None, stop=None):
        self.calls += 1
        out = self.core.get_range(start, stop)
        self.elements += len(out)
        return out

    def __getattr__(self, name):
        return getattr(self.core, name)


def test_listing_by_type_reads_only_that_types_events():
    cv = ColumnVault(":memory:")
    log = EventLog(cv, "log")
    events = [("common", i) for i in range(20_000)]
    for at in (5, 7_000, 19_990):
        events[at] = ("rare", at)
    log.extend(events)
    spies = {}
    for col in (log._type_col, log._time_col, log._payload_col):
        spies[col.name] = col._core = Spy(col._core)
    got = [(e.seq, e.payload) for e in log.list(type="rare")]
    assert got == [(5, 5), (7_000, 7_000), (19_990, 19_990)]
    assert sum(s.elements for s in spies.values()) <= 6  # a time and a payload per event
    assert spies["log__type"].elements == 0
    assert [e.seq for e in log.list(type="rare", start=6, end=19_990)] == [7_000]
    assert log.count("rare") == 3 and log.count("common") == 19_997 and log.count("none") == 0


def test_since_time_is_a_binary_search():
    clock = Clock(0.0)
    kv = KVault(":memory:", clock=clock)
    log = EventLog(ColumnVault(kv), "log")
    for i in range(4096):
        clock.now = i
        log.append("t", i)
    spy = log._time_col._core = Spy(log._time_col._core)
    got = [e.payload for e in log.list(since_time=4090.5)]
    assert got == [4091, 4092, 4093, 4094, 4095]
    assert spy.calls <= 16  # log2(4096) probes plus the five events' page read


def test_a_clock_that_goes_backwards():
    clock = Clock(100.0)
    kv = KVault(":memory:", clock=clock)
    log = EventLog(ColumnVault(kv), "log")
    for now in (100, 101, 102, 50, 51, 103, 52, 200):
        clock.now = now
        log.append("t", now)
    # Every event at or after 101 s, whatever its position: the runs of nondecreasing times
    # are searched one by one.
    assert [e.payload for e in log.list(since_time=101)] == [101, 102, 103, 200]
    assert [e.payload for e in log.list(since_time=51)] == [100, 101, 102, 51, 103, 52, 200]
    assert [e.payload for e in log.list(since_time=51, start=3, end=6)] == [51, 103]
    assert list(log._back_col) == [3, 6]
    assert log.check() == []


# -- atomicity ------------------------------------------------------------------------------------


def test_rolled_back_appends_leave_nothing(db_path):
    kv, cv, log = open_log(db_path)
    log.append("kept", 1)
    with pytest.raises(RuntimeError), kv.transaction():
        log.append("new type", 2)
        log.append("kept", 3)
        raise RuntimeError
    assert len(log) == 1 and log.types() == ["kept"] and log.count("new type") == 0
    # The type registered in the rolled-back transaction is registered again, afresh.
    assert log.append("new type", 4) == 1
    assert [e.payload for e in log.list(type="new type")] == [4]
    assert log.check() == [] and cv.check() == []
    kv.close()


def test_a_log_created_in_a_rolled_back_transaction_is_created_again(db_path):
    kv = KVault(db_path)
    cv = ColumnVault(kv)
    with pytest.raises(RuntimeError), kv.transaction():
        log = EventLog(cv, "log")
        raise RuntimeError
    assert not any(name.startswith("log__") for name, _, _ in cv.list_columns())
    # Columns created since take the rolled-back columns' ids: the log must not write into them.
    others = [cv.create_column(f"other{i}", d) for i, d in enumerate(["u32", "i64", "bytes", "str", "i64"])]
    assert log.append("t", 1) == 0
    assert [len(c) for c in others] == [0] * 5 and cv.check() == []
    assert len(EventLog(cv, "log")) == 1 and cv.check() == []
    kv.close()


def test_appends_inside_a_transaction_commit_with_it(db_path):
    kv, _cv, log = open_log(db_path)
    with kv.transaction():
        log.append("order", {"id": 1})
        kv["stock"] = 9
    assert len(log) == 1 and kv["stock"] == 9
    kv.close()


def test_two_processes_append_to_one_log(db_path):
    open_log(db_path)[0].close()
    code = """
        import sys
        from ambervault import ColumnVault, EventLog
        log = EventLog(ColumnVault(sys.argv[1]), "log")
        for i in range(150):
            if i % 10 == 0:
                log.extend([(sys.argv[2], i), ("shared", sys.argv[2])])
            else:
                log.append(sys.argv[2], i)
    """
    import subprocess
    import sys
    import textwrap

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(db_path), who], stderr=subprocess.PIPE
        )
        for who in ("left", "right")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    kv, cv, log = open_log(db_path)
    assert len(log) == 330
    for who in ("left", "right"):
        assert [e.payload for e in log.list(type=who)] == list(range(150))
    assert sorted(e.payload for e in log.list(type="shared")) == ["left"] * 15 + ["right"] * 15
    assert log.check() == [] and cv.check() == []
    kv.close()


# -- bad input ------------------------------------------------------------------------------------


def snapshot(cv):
    return cv.list_columns()


def test_bad_input_is_refused_and_changes_nothing(db_path):
    clock = Clock()
    kv, cv, log = open_log(db_path, clock)
    log.append("t", 1)
    before = snapshot(cv)
    cases = [
        (TypeError, lambda: log.append(5, 1)),
        (TypeError, lambda: log.append(None, 1)),
        (InvalidArgument, lambda: log.append("", 1)),
        (TypeError, lambda: log.append("new", object())),
        (TypeError, lambda: log.extend([("ok", 1), ("new", object())])),
        (TypeError, lambda: log.extend([("ok", 1), ("missing payload",)])),
        (TypeError, lambda: log.extend(["not a pair"])),
        (TypeError, lambda: log.append("new", np.array([object()], dtype=object))),
        (TypeError, lambda: log.get("0")),
        (TypeError, lambda: log.get(1.0)),
        (IndexError, lambda: log.get(1)),
        (IndexError, lambda: log.get(-2)),
        (InvalidArgument, lambda: list(log.list(since_time=float("nan")))),
        (TypeError, lambda: list(log.list(since_time="yesterday"))),
        (TypeError, lambda: list(log.list(since_time=True))),
        (TypeError, lambda: list(log.list(type=1))),
        (TypeError, lambda: list(log.list(start=1.5))),
        (TypeError, lambda: EventLog(kv, "x")),
        (TypeError, lambda: EventLog(cv, 3)),
        (InvalidArgument, lambda: EventLog(cv, "a__b")),
        (InvalidArgument, lambda: EventLog(cv, "")),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    for bad_now in (float("nan"), float("inf"), 1e300):
        clock.now = bad_now
        with pytest.raises(InvalidArgument, match="clock"):
            log.append("new", 1)
    assert snapshot(cv) == before
    assert len(log) == 1 and log.types() == ["t"]
    kv.close()


def test_a_column_of_another_dtype_is_not_taken_for_a_log():
    cv = ColumnVault(":memory:")
    cv.create_column("x__time", "f64")
    with pytest.raises(InvalidArgument, match="not an event log"):
        EventLog(cv, "x")


def test_read_only_vault_reads_but_does_not_create(db_path):
    kv, _cv, log = open_log(db_path)
    log.append("t", "v")
    kv.close()
    with ColumnVault(db_path, read_only=True) as ro:
        assert EventLog(ro, "log").get(0)[:2] == ("t", "v")
        with pytest.raises(NotFound):
            EventLog(ro, "other")


# -- damage ---------------------------------------------------------------------------------------


def test_columns_of_different_lengths_are_refused_then_repaired(db_path):
    clock = Clock(10.0)
    kv, cv, log = open_log(db_path, clock)
    log.extend([("a", 0), ("b", 1), ("a", 2)])
    clock.now = 5.0
    log.append("b", 3)
    cv["log__time"].append(99)  # a torn event written around the log
    cv["log__type"].append(0)
    with pytest.raises(CorruptionError, match=r"different lengths.*repair"):
        EventLog(cv, "log")
    with pytest.raises(CorruptionError, match="different lengths"):
        log.append("a", 4)
    assert EventLog.repair(cv, "log") == 4
    log = EventLog(cv, "log")
    assert log.check() == [] and cv.check() == []
    assert [(e.type, e.payload) for e in log.list()] == [("a", 0), ("b", 1), ("a", 2), ("b", 3)]
    assert [e.seq for e in log.list(since_time=6)] == [0, 1, 2]
    assert log.append("a", 4) == 4
    kv.close()


def test_check_finds_a_damaged_index():
    cv = ColumnVault(":memory:")
    log = EventLog(cv, "log")
    log.extend([("a", 0), ("b", 1), ("a", 2)])
    cv["log__by_type__0"][1] = 1  # points at a "b" event
    assert any("other types" in p for p in log.check())
    assert EventLog.repair(cv, "log") == 3
    assert log.check() == []
    assert [e.seq for e in EventLog(cv, "log").list(type="a")] == [0, 2]


def test_closed_vault_is_refused(db_path):
    kv, _cv, log = open_log(db_path)
    kv.close()
    from ambervault import ClosedError

    for call in (lambda: log.append("t", 1), lambda: len(log), lambda: log.list()):
        with pytest.raises(ClosedError):
            call()
