"""Multi-process producer/consumer on one vault file.

Three producer processes each write 200 work items: the payload goes to the KVault, and the item's
id is appended to a shared ``queue`` column in the same transaction, so a consumer never sees an
id whose payload is missing. One consumer process follows the column, reads each payload and
records what it processed. Run: ``python examples/producer_consumer.py``.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import ambervault

PRODUCERS = 3
ITEMS = 200


def payload(item: int) -> bytes:
    return hashlib.sha256(str(item).encode()).digest() * (1 + item % 50)


def produce(path: str, worker: int) -> None:
    kv = ambervault.KVault(path, retries=100, backoff_base=0.005)
    queue = ambervault.ColumnVault(kv)["queue"]
    for n in range(ITEMS):
        item = worker * 10_000 + n
        with kv.transaction():  # payload and queue entry become visible together
            kv[f"item:{item}"] = payload(item)
            queue.append(item)
    kv.close()


def consume(path: str, expected: int) -> None:
    kv = ambervault.KVault(path, retries=100, backoff_base=0.005)
    cv = ambervault.ColumnVault(kv)
    queue = cv["queue"]
    done = cv["done"]
    seen = 0
    deadline = time.monotonic() + 120
    while seen < expected and time.monotonic() < deadline:
        available = len(queue)
        for item in queue[seen:available]:
            assert kv[f"item:{item}"] == payload(item), "payload must be there with its id"
            done.append(item)
        seen = available
        time.sleep(0.01)
    kv.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-queue-") as tmp:
        path = str(Path(tmp) / "queue.db")
        with ambervault.KVault(path) as kv:
            cv = ambervault.ColumnVault(kv)
            cv.create_column("queue", "i64")
            cv.create_column("done", "i64")
        ctx = mp.get_context("spawn")
        t0 = time.perf_counter()
        consumer = ctx.Process(target=consume, args=(path, PRODUCERS * ITEMS))
        consumer.start()
        producers = [ctx.Process(target=produce, args=(path, w)) for w in range(PRODUCERS)]
        for p in producers:
            p.start()
        for p in producers:
            p.join()
        consumer.join()
        dt = time.perf_counter() - t0
        with ambervault.KVault(path) as kv:
            cv = ambervault.ColumnVault(kv)
            done = sorted(cv["done"])
            expected = sorted(w * 10_000 + n for w in range(PRODUCERS) for n in range(ITEMS))
            assert done == expected, "every item consumed exactly once"
            print(f"{PRODUCERS} producers x {ITEMS} items, 1 consumer: {len(done)} items in {dt:.2f}s")
            print(f"vault: {kv.stats()['keys']} payloads, check: {kv.check() or 'ok'}")
    print("done")


if __name__ == "__main__":
    main()
