"""SIGKILL during EventLog appends and batches: every acknowledged event survives, an event is
never torn across its columns (type, time, payload and the type index have it or none of them
do), and the reopened log and file pass ``check()``."""

from __future__ import annotations

import random

from harness import KILLS, run_until_killed

from ambervault import ColumnVault, EventLog

TYPES = ["alpha", "beta", "gamma", "delta"]


def work(path, ack):
    cv = ColumnVault(path, min_chunk_bytes=256, max_chunk_bytes=4096)
    log = EventLog(cv, "log")
    i = 0
    while True:
        if i % 7 == 3:  # a batch of five events in one transaction
            log.extend([(TYPES[(i + k) % 4], {"i": i + k, "pad": "x" * (i % 50)}) for k in range(5)])
            i += 5
        else:
            log.append(TYPES[i % 4], {"i": i, "pad": "x" * (i % 50)})
            i += 1
        ack(i)  # events 0 .. i-1 are acknowledged


def check(path, acked_events):
    with ColumnVault(path) as cv:
        log = EventLog(cv, "log")  # refuses columns of different lengths
        n = len(log)
        assert n >= acked_events, "an acknowledged event was lost"
        events = list(log.list())
        assert [e.payload["i"] for e in events] == list(range(n)), "events torn or out of order"
        assert all(e.type == TYPES[e.seq % 4] for e in events)
        for t in TYPES:
            assert [e.seq for e in log.list(type=t)] == [e.seq for e in events if e.type == t]
        assert log.check() == []
        assert cv.check() == []


def events_after(ops):
    """Events appended by the first ``ops`` operations of ``work``."""
    i = 0
    for _ in range(ops):
        i += 5 if i % 7 == 3 else 1
    return i


def test_killed_event_appenders_leave_whole_events(tmp_path):
    rng = random.Random(20)
    for k in range(KILLS):
        path = tmp_path / f"{k}.db"
        acked = run_until_killed(lambda ack, p=path: work(p, ack), rng)
        check(path, events_after(acked))
