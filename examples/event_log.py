"""An agent's event log and shared state in one file: an EventLog of typed events, a state cell
updated by compare-and-swap, and a JSON document changed one path at a time.

Appends 3,000 events of three types (dict payloads, one with a numpy array), lists one type
through the type index and the last events by time, runs a compare-and-swap counter and edits
a settings document by path, then reopens the file to show everything persisted.
Run: ``python examples/event_log.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np

import ambervault


class Clock:
    """A clock advanced by hand (one event per simulated second), so the example is
    deterministic; a real program leaves ``clock`` out and gets the system clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def main() -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="ambervault-events-") as tmp:
        path = Path(tmp) / "agent.db"
        with ambervault.KVault(path, clock=clock) as kv:
            log = ambervault.EventLog(ambervault.ColumnVault(kv), "agent")

            t0 = time.perf_counter()
            for i in range(3_000):
                clock.now += 1
                if i % 100 == 0:
                    log.append("observation", {"step": i, "embedding": np.full(4, i, dtype=np.float32)})
                elif i % 10 == 0:
                    log.append("tool_call", {"step": i, "tool": "search", "args": ["query", i]})
                else:
                    log.append("thought", {"step": i, "text": f"thinking about step {i}"})
            dt = time.perf_counter() - t0
            print(f"appended {len(log):,} events in {dt:.2f}s ({len(log) / dt:,.0f} events/s, each durable)")
            print("types:", log.types(), "tool calls:", log.count("tool_call"))

            # One type, through the type index: only those events are read.
            calls = [e.payload["step"] for e in log.list(type="tool_call", start=2_000)]
            assert calls[:3] == [2_010, 2_020, 2_030] and len(calls) == 90
            # The last minute, found by binary search on the time column.
            recent = list(log.list(since_time=clock.now - 59))
            assert [e.seq for e in recent] == list(range(2_940, 3_000))
            obs = log.get(2_900)
            assert obs[0] == "observation" and obs[1]["embedding"].tolist() == [2_900.0] * 4
            print(f"last minute: {len(recent)} events; event 2900 is an {obs[0]} at t={obs[2]:.0f}")

            # A state cell: a counter updated by compare-and-swap (safe across processes).
            kv.state_init("episodes", 0)
            for _ in range(5):
                while True:
                    value, version = kv.state_get("episodes")
                    if kv.state_cas("episodes", value + 1, version) is not None:
                        break
            print("episodes:", kv.state_get("episodes"))

            # A JSON document edited by path, each change one transaction.
            kv.json_set("settings", "$.model.name", "small")
            kv.json_set("settings", "$.model.temperature", 0.2)
            kv.json_set("settings", "$.tools", ["search"])
            kv.json_set("settings", "$.tools[1]", "calculator")  # [len] appends
            kv.json_delete("settings", "$.model.temperature")
            print("settings:", kv["settings"], "version", kv.version("settings"))
            assert log.check() == [] and kv.check() == []

        with ambervault.ColumnVault(path, read_only=True) as cv:
            again = ambervault.EventLog(cv, "agent")
            tools: List[str] = [e.payload["tool"] for e in again.list(type="tool_call")]
            assert len(again) == 3_000 and len(tools) == 270
        with ambervault.KVault(path, read_only=True) as kv:
            assert kv.state_get("episodes") == (5, 6)
            assert kv.json_get("settings", "$.tools[-1]") == "calculator"
        print("reopened: 3,000 events, the counter and the document are all there")
    print("done")


if __name__ == "__main__":
    main()
