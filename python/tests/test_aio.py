"""ambervault.aio: the async vaults.

What they promise beyond the synchronous API they wrap: the event loop keeps running while a
call works (its threads are bounded); a transaction's calls all run on the thread that owns the
native transaction, while other tasks wait for it instead of slipping into it; a task cancelled
in the middle of a streamed write or a transaction leaves every key as it was and the vault
usable; errors are the synchronous API's; a closed vault refuses every call.

Blocking helpers wait on events with a generous timeout only so that a broken build fails
instead of hanging; no assertion depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, List

import numpy as np
import pytest

import ambervault
from ambervault import ClosedError, ColumnVault, Conflict, InvalidArgument, KVault, NotFound
from ambervault.aio import AsyncColumnVault, AsyncKVault
from helpers import run_python

GATE_TIMEOUT = 30  # seconds; only reached when the code under test is broken

asyncio_test = pytest.mark.asyncio


def wait_gate(gate: threading.Event) -> None:
    """Block a vault thread until the test opens ``gate`` from the event loop."""
    if not gate.wait(GATE_TIMEOUT):
        raise TimeoutError("the event loop never opened the gate: was it blocked?")


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a vault thread makes it true)."""
    for _ in range(GATE_TIMEOUT * 1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never became true")


async def spin(rounds: int = 50) -> None:
    """Let every other ready task run for a while."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def pending_uploads(kv: KVault) -> int:
    return int(kv.stats()["pending_uploads"])


# -- opening, closing, round trips -----------------------------------------------------------------
@asyncio_test
async def test_construction_touches_nothing_until_awaited(db_path: Path) -> None:
    vault = AsyncKVault(db_path, chunk_size=4096)
    assert not db_path.exists() and "not opened" in repr(vault)
    with pytest.raises(InvalidArgument):
        vault.kvault  # noqa: B018 - not open yet
    assert await vault is vault
    assert db_path.exists() and vault.kvault.chunk_size == 4096
    await vault.aclose()
    assert vault.closed


@asyncio_test
async def test_first_call_opens_and_async_with_closes(db_path: Path) -> None:
    vault = AsyncKVault(db_path)
    await vault.put("k", b"v")  # opened by the call
    async with vault:
        assert await vault.get("k") == b"v"
    assert vault.closed
    with KVault(db_path) as kv:
        assert kv["k"] == b"v"


@asyncio_test
async def test_round_trips_of_the_mapping_calls(db_path: Path) -> None:
    async with AsyncKVault(db_path, history=5) as vault:
        await vault.put("bytes", b"\x00\xff")
        await vault.put(("user", 7), {"name": "Ada", "tags": ("x", "y")})
        await vault.put(b"text", "é")
        assert await vault.get("bytes") == b"\x00\xff"
        assert await vault.get(("user", 7)) == {"name": "Ada", "tags": ("x", "y")}
        assert await vault.get(b"text") == "é"
        assert await vault.get("missing") is None
        assert await vault.get("missing", b"fallback") == b"fallback"
        assert await vault.exists("bytes") and not await vault.exists("missing")
        assert await vault.length() == 3
        assert await vault.delete("bytes") is True
        assert await vault.delete("bytes") is False
        await vault.put_many({"a": 1, "b": [2, 3]})
        assert await vault.get_many(["a", "b", "zz"], default="none") == [1, [2, 3], "none"]
        await vault.put("a", 10, if_version=1)
        assert await vault.get("a", version=1) == 1 and await vault.get("a") == 10
        info = await vault.run(vault.kvault.info, "a")
        assert info is not None and info["version"] == 2


@asyncio_test
async def test_wrapping_an_open_kvault_leaves_it_open(db_path: Path) -> None:
    with KVault(db_path) as kv:
        async with AsyncKVault(kv) as vault:
            await vault.put("k", b"v")
            assert vault.kvault is kv
        assert not kv.closed and kv["k"] == b"v"


@asyncio_test
async def test_bad_construction_arguments_are_refused_at_once(db_path: Path) -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        AsyncKVault(db_path, no_such_option=1)
    with pytest.raises(TypeError):
        AsyncKVault(12345)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        AsyncKVault(db_path, max_threads=0)
    with pytest.raises(TypeError):
        AsyncKVault(db_path, max_threads="2")  # type: ignore[arg-type]
    assert os.listdir(db_path.parent) == [], "nothing may be created"
    with KVault(db_path) as kv, pytest.raises(TypeError, match="chunk_size"):
        AsyncKVault(kv, chunk_size=64)


@asyncio_test
async def test_an_open_error_surfaces_at_the_await_and_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    vault = AsyncKVault(path, read_only=True)
    with pytest.raises(OSError):
        await vault
    KVault(path).close()
    async with vault:  # the failed open left the handle unopened, not broken
        assert await vault.length() == 0


# -- scans -----------------------------------------------------------------------------------------
@asyncio_test
async def test_scans_return_what_the_sync_scans_return(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        await vault.put_many([(f"k{i:05d}", i) for i in range(2500)] + [("other", b"x")])
        kv = vault.kvault
        assert [k async for k in vault.keys()] == list(kv.keys())
        assert [k async for k in vault.keys(prefix="k", reverse=True, limit=1200)] == list(
            kv.keys(prefix="k", reverse=True, limit=1200)
        )
        assert [v async for v in vault.values(start="k02490")] == [*range(2490, 2500), b"x"]
        items = [pair async for pair in vault.items(prefix="k0001")]
        assert items == [(f"k0001{i}", 10 + i) for i in range(10)]
        scan = vault.keys(prefix="other")
        assert await scan.to_list() == ["other"] and await scan.to_list() == ["other"]  # re-iterable


@asyncio_test
async def test_scans_fetch_pages_not_one_thread_call_per_key(db_path: Path, monkeypatch: Any) -> None:
    async with AsyncKVault(db_path) as vault:
        await vault.put_many([(f"k{i:05d}", i) for i in range(2500)])
        runner = vault._runner
        real_call = runner.call
        calls: List[Any] = []

        async def counting_call(func: Callable[..., Any], *args: Any) -> Any:
            calls.append(func)
            return await real_call(func, *args)

        monkeypatch.setattr(runner, "call", counting_call)
        assert len([k async for k in vault.keys()]) == 2500
        assert len(calls) == 3  # pages of 1000
        calls.clear()
        assert len([pair async for pair in vault.items()]) == 2500
        assert len(calls) == 10  # pages of 256


@asyncio_test
async def test_bad_scan_filters_are_refused_when_the_scan_is_made(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        with pytest.raises(InvalidArgument):
            vault.keys(limit=-1)
        with pytest.raises(TypeError):
            vault.items(prefix=1.5)  # type: ignore[arg-type]


# -- concurrency and the event loop ----------------------------------------------------------------
@asyncio_test
async def test_many_tasks_at_once_all_get_their_own_results(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:

        async def worker(i: int) -> Any:
            await vault.put(f"key{i}", {"i": i, "data": bytes([i % 256]) * (i * 37 % 5000)})
            return await vault.get(f"key{i}")

        results = await asyncio.gather(*(worker(i) for i in range(300)))
        assert results == [{"i": i, "data": bytes([i % 256]) * (i * 37 % 5000)} for i in range(300)]
        assert await vault.length() == 300


@asyncio_test
async def test_the_pool_runs_at_most_max_threads_calls(db_path: Path) -> None:
    async with AsyncKVault(db_path, max_threads=2) as vault:
        assert vault.max_threads == 2
        gate = threading.Event()
        lock = threading.Lock()
        running, peak, threads = [0], [0], set()

        def blocking() -> None:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                threads.add(threading.get_ident())
            wait_gate(gate)
            with lock:
                running[0] -= 1

        tasks = [asyncio.create_task(vault.run(blocking)) for _ in range(6)]
        await until(lambda: running[0] >= 2)
        await spin()
        assert running[0] == 2  # the other four wait for a thread
        gate.set()
        await asyncio.gather(*tasks)
        assert peak[0] == 2 and len(threads) == 2 and threading.get_ident() not in threads


@asyncio_test
async def test_the_event_loop_keeps_running_during_a_large_put(db_path: Path) -> None:
    big = os.urandom(1 << 20) * 48
    async with AsyncKVault(db_path) as vault:
        in_flight = False
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += in_flight
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        in_flight = True
        await vault.put("big", big)  # had it run on the loop, the ticker could not tick in between
        in_flight = False
        stop.set()
        await task
        assert ticks >= 1
        assert await vault.get("big") == big


class GatedReader:
    """A binary file whose first read blocks until the event loop opens the gate: a stream
    read on the loop itself would wait forever (here: until the timeout)."""

    def __init__(self, data: bytes, gate: threading.Event) -> None:
        self._data = io.BytesIO(data)
        self._gate = gate
        self.blocked = threading.Event()

    def read(self, n: int) -> bytes:
        self.blocked.set()
        wait_gate(self._gate)
        return self._data.read(n)


@asyncio_test
async def test_a_stream_reads_its_source_off_the_loop(db_path: Path) -> None:
    gate = threading.Event()
    source = GatedReader(b"x" * 100_000, gate)
    async with AsyncKVault(db_path, chunk_size=4096) as vault:
        upload = asyncio.create_task(vault.put_file("f", source))

        async def open_gate() -> None:
            await until(lambda: source.blocked.is_set())
            gate.set()

        await asyncio.gather(upload, open_gate())
        assert upload.result() == 100_000
        assert await vault.get("f") == b"x" * 100_000


@asyncio_test
async def test_a_queued_call_cancelled_before_it_starts_never_runs(db_path: Path) -> None:
    async with AsyncKVault(db_path, max_threads=1) as vault:
        gate = threading.Event()
        blocker = asyncio.create_task(vault.run(wait_gate, gate))  # holds the only thread
        await spin()
        queued = asyncio.create_task(vault.put("k", b"v"))
        await spin()
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()
        await blocker
        assert not await vault.exists("k")


@asyncio_test
async def test_a_started_call_finishes_before_its_cancellation_is_raised(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        gate = threading.Event()
        started, finished = threading.Event(), threading.Event()

        def slow_write(kv: KVault) -> None:
            started.set()
            wait_gate(gate)
            kv.put("k", b"written")
            finished.set()

        task = asyncio.create_task(vault.run(slow_write, vault.kvault))
        await until(lambda: started.is_set())
        task.cancel()
        await spin()
        assert not task.done()  # still waiting for its thread
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.is_set()  # nothing of the call is running behind the caller's back
        assert await vault.get("k") == b"written"


# -- streaming -------------------------------------------------------------------------------------
@asyncio_test
async def test_writer_and_reader_round_trip(db_path: Path) -> None:
    payload = os.urandom(10_000)
    async with AsyncKVault(db_path, chunk_size=1024) as vault:
        async with vault.open("blob", "wb") as w:
            for i in range(0, len(payload), 3000):
                assert await w.write(payload[i : i + 3000]) == len(payload[i : i + 3000])
            assert await w.tell() == len(payload)
            assert not await vault.exists("blob")  # invisible until closed
        assert w.closed
        async with vault.open("blob") as r:
            assert r.size == len(payload)
            assert await r.seek(5000) == 5000
            assert await r.read(10) == payload[5000:5010]
            assert await r.tell() == 5010
            assert await r.seek(-10, io.SEEK_END) == len(payload) - 10
            assert await r.read() == payload[-10:]
            assert await r.read(5) == b""
        assert r.closed
        reader = await vault.open("blob")  # awaited, closed by hand
        assert await reader.readall() == payload
        await reader.close()
        writer = await vault.open("blob", "wb")
        await writer.write(b"replaced")
        await writer.close()
        assert await vault.get("blob") == b"replaced"


@asyncio_test
async def test_put_file_takes_paths_files_and_iterables(db_path: Path, tmp_path: Path) -> None:
    payload = os.urandom(50_000)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)

    async def achunks() -> Any:
        for i in range(0, len(payload), 7000):
            yield payload[i : i + 7000]

    async with AsyncKVault(db_path, chunk_size=4096) as vault:
        assert await vault.put_file("path", src) == len(payload)
        assert await vault.put_file("file", io.BytesIO(payload)) == len(payload)
        assert await vault.put_file("aiter", achunks()) == len(payload)
        chunks = [payload[i : i + 5000] for i in range(0, len(payload), 5000)]
        assert await vault.put_file("iter", chunks) == len(payload)
        async with vault.open("path") as async_source:  # an async file as the source
            assert await vault.put_file("copy", async_source, chunk_size=3000) == len(payload)
        assert await vault.put_file("head", io.BytesIO(payload), size=1234) == 1234
        assert await vault.put_file("ahead", achunks(), size=10_001) == 10_001
        assert await vault.put_file("ihead", iter(chunks), size=5001) == 5001
        assert await vault.get_many(["path", "file", "aiter", "iter", "copy"]) == [payload] * 5
        assert await vault.get_many(["head", "ahead", "ihead"]) == [
            payload[:1234],
            payload[:10_001],
            payload[:5001],
        ]


@asyncio_test
async def test_put_file_ttl_applies_to_the_streamed_value(db_path: Path) -> None:
    now = [1_000_000.0]
    async with AsyncKVault(db_path, clock=lambda: now[0]) as vault:
        await vault.put_file("short", io.BytesIO(b"abc"), ttl=60)
        assert await vault.get("short") == b"abc"
        assert await vault.run(vault.kvault.expires_at, "short") == now[0] + 60
        now[0] += 61
        assert await vault.get("short") is None


@asyncio_test
async def test_put_file_from_a_short_source_stores_nothing(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        await vault.put("k", b"old")
        with pytest.raises(InvalidArgument, match="3 of the 10 bytes"):
            await vault.put_file("k", io.BytesIO(b"abc"), size=10)
        assert await vault.get("k") == b"old"
        assert pending_uploads(vault.kvault) == 0


@asyncio_test
async def test_get_to_file_writes_paths_files_and_async_files(db_path: Path, tmp_path: Path) -> None:
    payload = os.urandom(30_000)

    class AsyncSink:
        def __init__(self) -> None:
            self.parts: List[bytes] = []

        async def write(self, data: bytes) -> int:
            self.parts.append(data)
            return len(data)

    async with AsyncKVault(db_path, chunk_size=4096) as vault:
        await vault.put("v", payload)
        dest = tmp_path / "out.bin"
        assert await vault.get_to_file("v", dest) == len(payload)
        assert dest.read_bytes() == payload and not (tmp_path / "out.bin.part").exists()
        out = io.BytesIO()
        assert await vault.get_to_file("v", out, chunk_size=1000) == len(payload)
        assert out.getvalue() == payload
        sink = AsyncSink()
        assert await vault.get_to_file("v", sink, chunk_size=7000) == len(payload)
        assert b"".join(sink.parts) == payload and len(sink.parts) == 5
        missing = tmp_path / "missing.bin"
        with pytest.raises(NotFound):
            await vault.get_to_file("nope", missing)
        assert not missing.exists() and not (tmp_path / "missing.bin.part").exists()


# -- cancellation in the middle of a stream --------------------------------------------------------
@asyncio_test
async def test_cancelling_a_writer_between_writes_keeps_the_old_value(db_path: Path) -> None:
    async with AsyncKVault(db_path, chunk_size=1024) as vault:
        await vault.put("k", b"old")
        halfway = asyncio.Event()

        async def upload() -> None:
            async with vault.open("k", "wb") as w:
                for _ in range(10):
                    await w.write(b"n" * 3000)
                halfway.set()
                await asyncio.Event().wait()  # cancelled here

        task = asyncio.create_task(upload())
        await halfway.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await vault.get("k") == b"old"
        assert pending_uploads(vault.kvault) == 0 and vault.kvault.check() == []
        await vault.put_file("k", io.BytesIO(b"new" * 1000))  # still usable
        assert await vault.get("k") == b"new" * 1000


@asyncio_test
async def test_cancelling_put_file_while_a_chunk_is_on_its_thread(db_path: Path) -> None:
    async with AsyncKVault(db_path, chunk_size=1024) as vault:
        await vault.put("k", b"old")
        gate = threading.Event()
        reads = [0]

        def chunks() -> Any:
            for _ in range(100):
                reads[0] += 1
                if reads[0] == 5:
                    wait_gate(gate)  # the fifth chunk is being read when the task is cancelled
                yield b"z" * 1000

        task = asyncio.create_task(vault.put_file("k", chunks()))
        await until(lambda: reads[0] >= 5)
        task.cancel()
        await spin()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reads[0] == 5  # no chunk was read after the cancellation
        assert await vault.get("k") == b"old"
        assert pending_uploads(vault.kvault) == 0 and vault.kvault.check() == []


@asyncio_test
async def test_cancelling_put_file_from_an_async_source(db_path: Path) -> None:
    async with AsyncKVault(db_path, chunk_size=1024) as vault:
        halfway = asyncio.Event()

        async def slow_chunks() -> Any:
            for i in range(100):
                if i == 20:
                    halfway.set()
                    await asyncio.Event().wait()
                yield b"q" * 2000

        task = asyncio.create_task(vault.put_file("fresh", slow_chunks()))
        await halfway.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await vault.exists("fresh")
        assert pending_uploads(vault.kvault) == 0


@asyncio_test
async def test_a_cancelled_copy_to_a_path_leaves_no_file(db_path: Path, tmp_path: Path) -> None:
    async with AsyncKVault(db_path, chunk_size=1024) as vault:
        await vault.put("v", os.urandom(200_000))
        gate = threading.Event()
        writes = [0]

        class GatedSink:
            def write(self, data: bytes) -> int:
                writes[0] += 1
                if writes[0] == 3:
                    wait_gate(gate)
                return len(data)

        task = asyncio.create_task(vault.get_to_file("v", GatedSink(), chunk_size=1000))
        await until(lambda: writes[0] >= 3)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert writes[0] == 3

        dest = tmp_path / "copy.bin"
        halfway = asyncio.Event()
        real_call = vault._runner.call
        calls = [0]

        async def pausing_call(func: Callable[..., Any], *args: Any) -> Any:
            calls[0] += 1
            if calls[0] == 10:
                halfway.set()
                await asyncio.Event().wait()
            return await real_call(func, *args)

        vault._runner.call = pausing_call  # type: ignore[method-assign]
        try:
            task = asyncio.create_task(vault.get_to_file("v", dest, chunk_size=1000))
            await halfway.wait()
            assert (tmp_path / "copy.bin.part").exists()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            vault._runner.call = real_call  # type: ignore[method-assign]
        assert not dest.exists() and not (tmp_path / "copy.bin.part").exists()
        assert await vault.length() == 1  # the vault is fine


# -- transactions ----------------------------------------------------------------------------------
@asyncio_test
async def test_transaction_commits_or_rolls_back(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        async with vault.transaction() as txn:
            assert txn.active
            await vault.put("a", 1)
            await vault.put_file("big", io.BytesIO(b"b" * 100_000))
            assert await vault.get("a") == 1  # reads see the transaction's own writes
        assert not txn.active
        with pytest.raises(RuntimeError):
            async with vault.transaction():
                await vault.put("a", 2)
                await vault.delete("big")
                raise RuntimeError("roll back")
        assert await vault.get("a") == 1 and await vault.exists("big")
        with KVault(db_path) as other:  # committed for other connections too
            assert other["a"] == 1


@asyncio_test
async def test_a_transactions_calls_run_on_one_thread_of_their_own(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        outside = await vault.run(threading.get_ident)
        async with vault.transaction():
            inside = {await vault.run(threading.get_ident) for _ in range(5)}
            inside |= set(await asyncio.gather(*(vault.run(threading.get_ident) for _ in range(5))))
        assert len(inside) == 1 and outside not in inside and threading.get_ident() not in inside


@asyncio_test
async def test_other_tasks_wait_for_a_transaction_instead_of_joining_it(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        await vault.put("a", b"old")
        inside, release = asyncio.Event(), asyncio.Event()
        log: List[Any] = []

        async def transaction() -> None:
            try:
                async with vault.transaction():
                    await vault.put("a", b"uncommitted")
                    inside.set()
                    await release.wait()
                    log.append("rolled back")
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass

        async def outsider() -> None:
            await inside.wait()
            seen = await vault.get("a")
            await vault.put("b", b"from outside")
            log.append(("outsider saw", seen))

        tasks = [asyncio.create_task(transaction()), asyncio.create_task(outsider())]
        await inside.wait()
        await spin()
        assert log == []  # the outsider is waiting
        release.set()
        await asyncio.gather(*tasks)
        assert log == ["rolled back", ("outsider saw", b"old")]
        assert await vault.get("b") == b"from outside"  # not rolled back with the transaction
        assert await vault.get("a") == b"old"


@asyncio_test
async def test_tasks_started_inside_a_transaction_are_part_of_it(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        with pytest.raises(RuntimeError):
            async with vault.transaction():
                await asyncio.gather(*(vault.put(f"k{i}", i) for i in range(20)))
                assert await vault.length() == 20
                raise RuntimeError("roll back")
        assert await vault.length() == 0


@asyncio_test
async def test_a_second_transaction_waits_for_the_first(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        order: List[str] = []
        first_in = asyncio.Event()

        async def first() -> None:
            async with vault.transaction():
                first_in.set()
                order.append("first begins")
                await vault.put("k", 1)
                await spin()
                order.append("first ends")

        async def second() -> None:
            await first_in.wait()
            async with vault.transaction():
                order.append("second begins")
                await vault.put("k", await vault.get("k") + 1)

        await asyncio.gather(first(), second())
        assert order == ["first begins", "first ends", "second begins"]
        assert await vault.get("k") == 2


@asyncio_test
async def test_nested_transactions_are_savepoints(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        async with vault.transaction():
            await vault.put("outer", 1)
            with pytest.raises(KeyError):
                async with vault.transaction():
                    await vault.put("inner", 2)
                    raise KeyError("inner only")
            async with vault.transaction():
                await vault.put("kept", 3)
        assert await vault.get_many(["outer", "inner", "kept"]) == [1, None, 3]


@asyncio_test
async def test_explicit_commit_inside_the_block_hands_the_vault_back(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        async with vault.transaction() as txn:
            await vault.put("a", 1)
            await txn.commit()
            await vault.put("b", 2)  # after the commit: an ordinary call, no deadlock
            with pytest.raises(ClosedError):
                await txn.rollback()
        async with vault.transaction() as txn:
            await vault.put("c", 3)
            await txn.rollback()
        assert await vault.get_many(["a", "b", "c"]) == [1, 2, None]
        with pytest.raises(InvalidArgument):
            async with txn:
                pass


@asyncio_test
async def test_cancelling_a_task_inside_a_transaction_rolls_it_back(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        await vault.put("a", b"old")
        entered = asyncio.Event()

        async def body() -> None:
            async with vault.transaction():
                await vault.put("a", b"new")
                await vault.put_file("c", io.BytesIO(b"c" * 50_000))
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(body())
        await entered.wait()
        waiter = asyncio.create_task(vault.get("a"))  # waits for the transaction
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await waiter == b"old"
        assert await vault.get("a") == b"old" and not await vault.exists("c")
        async with vault.transaction():  # the vault is usable, transactions too
            await vault.put("a", b"after")
        assert await vault.get("a") == b"after"
        assert vault.kvault.check() == []


@asyncio_test
async def test_cancelling_while_a_transactions_call_is_on_its_thread(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        gate, started = threading.Event(), threading.Event()

        def slow_put(kv: KVault) -> None:
            kv.put("x", b"inside")
            started.set()
            wait_gate(gate)

        async def body() -> None:
            async with vault.transaction():
                await vault.put("y", b"inside")
                await vault.run(slow_put, vault.kvault)

        task = asyncio.create_task(body())
        await until(lambda: started.is_set())
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await vault.get_many(["x", "y"]) == [None, None]


@asyncio_test
async def test_closing_waits_for_a_transaction_and_refuses_inside_one(db_path: Path) -> None:
    vault = await AsyncKVault(db_path)
    entered, release = asyncio.Event(), asyncio.Event()

    async def body() -> None:
        async with vault.transaction():
            with pytest.raises(InvalidArgument):
                await vault.aclose()
            entered.set()
            await release.wait()
            await vault.put("k", b"committed before close")

    task = asyncio.create_task(body())
    await entered.wait()
    closing = asyncio.create_task(vault.aclose())
    await spin()
    assert not closing.done()
    release.set()
    await asyncio.gather(task, closing)
    assert vault.closed
    with KVault(db_path) as kv:
        assert kv["k"] == b"committed before close"


# -- columns ---------------------------------------------------------------------------------------
@asyncio_test
async def test_column_calls_round_trip(db_path: Path) -> None:
    async with AsyncColumnVault(db_path) as cv:
        col = await cv.create_column("x", "i64")
        assert (col.name, col.dtype) == ("x", "i64")
        await col.extend([1, 2, 3])
        await col.append(4)
        assert await col.length() == 4
        assert await col.get(0) == 1 and await col.get(-1) == 4
        assert await col.get(slice(1, 3)) == [2, 3] and await col.get(slice(None, None, -2)) == [4, 2]
        await col.set(0, 10)
        await col.insert(1, 5)
        await col.delete(-1)
        assert await col.pop() == 3
        assert [v async for v in col] == [10, 5, 2]
        arr = await col.to_numpy()
        assert arr.dtype == np.int64 and arr.tolist() == [10, 5, 2]
        await col.extend(np.arange(20_000, dtype=np.int64))
        assert await col.elements().to_list() == [10, 5, 2, *range(20_000)]
        await col.clear()
        assert await col.length() == 0
        names = await cv.create_column("names", "str")
        await names.extend(["a", "b"])
        assert (await cv.ensure("names", "str")).column is names.column
        assert (await cv.column("names")).column is names.column
        assert await cv.list_columns() == [("names", "str", 2), ("x", "i64", 0)]
        await cv.rename_column("names", "labels")
        assert await cv.has_column("labels") and not await cv.has_column("names")
        assert await cv.delete_column("labels") is True
        assert await cv.list_columns() == [("x", "i64", 0)]


@asyncio_test
async def test_many_tasks_append_to_one_column(db_path: Path) -> None:
    async with AsyncColumnVault(db_path) as cv:
        col = await cv.create_column("n", "i32")
        await asyncio.gather(*(col.append(i) for i in range(200)))
        assert sorted([v async for v in col]) == list(range(200))


@asyncio_test
async def test_columns_on_an_async_kvault_share_its_transactions(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        cv = AsyncColumnVault(vault)
        col = await cv.create_column("events", "str")
        with pytest.raises(RuntimeError):
            async with vault.transaction():
                await vault.put("meta", {"n": 2})
                await col.extend(["a", "b"])
                raise RuntimeError("roll back both")
        assert await col.length() == 0 and not await vault.exists("meta")
        async with cv.transaction():
            await vault.put("meta", {"n": 1})
            await col.append("c")
        assert await col.get(slice(None)) == ["c"] and await vault.get("meta") == {"n": 1}
        await cv.aclose()
        with pytest.raises(ClosedError):
            await col.length()
        assert await vault.get("meta") == {"n": 1}  # the KVault's file stays open
    with pytest.raises(ClosedError):
        await cv.list_columns()


@asyncio_test
async def test_column_vault_from_a_kvault_or_a_column_vault(db_path: Path) -> None:
    with KVault(db_path) as kv:
        async with AsyncColumnVault(kv, max_threads=1) as acv:
            await (await acv.create_column("a", "f32")).append(1.5)
        assert not kv.closed
        cv = ColumnVault(kv)
        async with AsyncColumnVault(cv) as acv:
            assert await (await acv.column("a")).get(0) == 1.5
        assert cv["a"][0] == 1.5  # left open for its owner


@asyncio_test
async def test_separate_wrappers_of_one_kvault_share_its_transactions(db_path: Path) -> None:
    # Each wrapper has threads of its own; a call through one inside the other's transaction
    # must still join it (on any thread but the transaction's, it would wait for itself).
    with KVault(db_path) as kv:
        async with AsyncKVault(kv) as vault, AsyncColumnVault(kv) as cv:
            col = await cv.create_column("n", "i64")
            with pytest.raises(RuntimeError):
                async with vault.transaction():
                    await vault.put("k", 1)
                    await col.extend([1, 2])
                    raise RuntimeError("roll back both")
            async with cv.transaction():
                await col.append(3)
                await vault.put("k", 2)
                async with vault.transaction():  # a savepoint of cv's transaction
                    await vault.put("j", 3)
            assert await col.get(slice(None)) == [3]
            assert await vault.get_many(["k", "j"]) == [2, 3]


@asyncio_test
async def test_bad_column_vault_arguments_are_refused(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        with pytest.raises(InvalidArgument, match="max_threads"):
            AsyncColumnVault(vault, max_threads=2)
        with pytest.raises(TypeError):
            AsyncColumnVault(vault, no_such_option=1)
        with pytest.raises(TypeError):
            AsyncColumnVault(ColumnVault(vault.kvault), min_chunk_bytes=1024)
        with pytest.raises(TypeError):
            AsyncColumnVault(3.5)  # type: ignore[arg-type]


# -- errors: the synchronous API's -----------------------------------------------------------------
KV_ERROR_CASES = [
    ("unstorable value", lambda v: v.put("k", object())),
    ("bad key type", lambda v: v.get(1.5)),
    ("if_absent on an existing key", lambda v: v.put("present", b"x", if_absent=True)),
    ("stale if_version", lambda v: v.put("present", b"x", if_version=99)),
    ("negative ttl", lambda v: v.put("k", b"x", ttl=-1)),
    ("put_many of a generator", lambda v: v.put_many(iter([("a", b"1")]))),
    ("get_many of a str", lambda v: v.get_many("ab")),
    ("put_file of a bad source", lambda v: v.put_file("k", 42)),
    ("put_file of a short source", lambda v: v.put_file("k", io.BytesIO(b"ab"), size=5)),
    ("put_file of a negative size", lambda v: v.put_file("k", io.BytesIO(b"ab"), size=-1)),
    ("put_file with a bad key", lambda v: v.put_file(1.5, io.BytesIO(b"ab"))),
    ("get_to_file of a missing key", lambda v: v.get_to_file("missing", io.BytesIO())),
    ("get_to_file with chunk_size 0", lambda v: v.get_to_file("present", io.BytesIO(), chunk_size=0)),
    ("open a missing key", lambda v: v.open("missing")),
    ("open with a bad mode", lambda v: v.open("present", "r+")),
]


@asyncio_test
@pytest.mark.parametrize("case", KV_ERROR_CASES, ids=[c[0] for c in KV_ERROR_CASES])
async def test_errors_are_those_of_the_sync_api_and_change_nothing(db_path: Path, case: Any) -> None:
    _, call = case
    with KVault(db_path) as kv:
        kv["present"] = b"v"
        before = dict(kv.items())
        with pytest.raises(Exception) as sync_error:
            call(kv)
        async with AsyncKVault(kv) as vault:
            with pytest.raises(Exception) as async_error:
                await call(vault)
        assert type(async_error.value) is type(sync_error.value)
        assert dict(kv.items()) == before and pending_uploads(kv) == 0


COLUMN_ERROR_CASES = [
    ("index out of range", lambda col: col.__getitem__(10), lambda col: col.get(10)),
    ("element of the wrong type", lambda col: col.append("x"), lambda col: col.append("x")),
    ("a refused element in extend", lambda col: col.extend([1, "x"]), lambda col: col.extend([1, "x"])),
    ("pop from an empty slice", lambda col: col.pop(50), lambda col: col.pop(50)),
]


@asyncio_test
@pytest.mark.parametrize("case", COLUMN_ERROR_CASES, ids=[c[0] for c in COLUMN_ERROR_CASES])
async def test_column_errors_are_those_of_the_sync_api(db_path: Path, case: Any) -> None:
    _, sync_call, async_call = case
    cv = ColumnVault(db_path)
    cv.create_column("n", "i64").extend([1, 2])
    with pytest.raises(Exception) as sync_error:
        sync_call(cv["n"])
    async with AsyncColumnVault(cv) as acv:
        col = await acv.column("n")
        with pytest.raises(Exception) as async_error:
            await async_call(col)
        assert type(async_error.value) is type(sync_error.value)
        assert await col.get(slice(None)) == [1, 2]
        for make in (lambda: acv.create_column("n", "i64"), lambda: acv.create_column("m", "nope")):
            with pytest.raises(InvalidArgument):
                await make()
        with pytest.raises(NotFound):
            await acv.column("missing")
    cv.close()


@asyncio_test
async def test_conflict_propagates_from_a_race_of_tasks(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        outcomes = await asyncio.gather(
            *(vault.put("once", i, if_absent=True) for i in range(10)), return_exceptions=True
        )
        assert sum(o is None for o in outcomes) == 1
        assert all(isinstance(o, Conflict) for o in outcomes if o is not None)


# -- a closed vault --------------------------------------------------------------------------------
@asyncio_test
async def test_a_closed_vault_refuses_every_call(db_path: Path) -> None:
    vault = await AsyncKVault(db_path)
    await vault.put("k", b"v")
    reader = await vault.open("k")
    writer = await vault.open("w", "wb")
    await vault.aclose()
    await vault.aclose()  # idempotent
    calls = [
        lambda: vault.get("k"),
        lambda: vault.put("k", b"x"),
        lambda: vault.delete("k"),
        lambda: vault.exists("k"),
        lambda: vault.length(),
        lambda: vault.get_many(["k"]),
        lambda: vault.put_many({"a": 1}),
        lambda: vault.keys().to_list(),
        lambda: vault.items().to_list(),
        lambda: vault.put_file("k", io.BytesIO(b"x")),
        lambda: vault.get_to_file("k", io.BytesIO()),
        lambda: vault.run(len, "x"),
        lambda: reader.read(1),
        lambda: writer.write(b"x"),
    ]
    for call in calls:
        with pytest.raises(ClosedError):
            await call()
    with pytest.raises(ClosedError):
        await vault.open("k")
    with pytest.raises(ClosedError):
        async with vault.transaction():
            pass
    with pytest.raises(ClosedError):
        vault.kvault  # noqa: B018
    with KVault(db_path) as kv:
        assert kv["k"] == b"v" and "w" not in kv and pending_uploads(kv) == 0


@asyncio_test
async def test_closed_files_refuse_reads_and_writes(db_path: Path) -> None:
    async with AsyncKVault(db_path) as vault:
        await vault.put("k", b"v")
        async with vault.open("k") as reader:
            pass
        async with vault.open("w", "wb") as writer:
            await writer.write(b"x")
        with pytest.raises(ClosedError):
            await reader.read()
        with pytest.raises(ClosedError):
            await reader.seek(0)
        with pytest.raises(ClosedError):
            await writer.write(b"more")
        discarded = await vault.open("d", "wb")
        await discarded.write(b"gone")
        await discarded.discard()
        with pytest.raises(ClosedError):
            await discarded.write(b"x")
        assert await vault.get_many(["w", "d"]) == [b"x", None]


@asyncio_test
async def test_a_closed_column_vault_refuses_every_call(db_path: Path) -> None:
    cv = await AsyncColumnVault(db_path)
    col = await cv.create_column("x", "i64")
    await cv.aclose()
    for call in (
        lambda: col.append(1),
        lambda: col.get(0),
        lambda: col.length(),
        lambda: col.elements().to_list(),
        lambda: cv.list_columns(),
        lambda: cv.create_column("y", "i64"),
    ):
        with pytest.raises(ClosedError):
            await call()
    with pytest.raises(ClosedError):
        cv.column_vault  # noqa: B018


# -- event loops and imports -----------------------------------------------------------------------
def test_one_vault_serves_one_loop_after_another(db_path: Path) -> None:
    vault = AsyncKVault(db_path)

    async def write(value: int) -> None:
        async with vault.transaction():
            await vault.put("k", value)

    asyncio.run(write(1))
    asyncio.run(write(2))  # the transaction lock is remade for the new loop
    assert asyncio.run(vault.get("k")) == 2
    asyncio.run(vault.aclose())


def test_import_ambervault_does_not_load_asyncio() -> None:
    result = run_python(
        """
        import sys
        import ambervault
        assert "asyncio" not in sys.modules, "import ambervault loaded asyncio"
        assert "ambervault.aio" not in sys.modules
        from ambervault import AsyncKVault
        import ambervault.aio
        assert AsyncKVault is ambervault.aio.AsyncKVault
        assert ambervault.AsyncColumnVault is ambervault.aio.AsyncColumnVault
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_async_classes_are_exported() -> None:
    assert {"AsyncKVault", "AsyncColumnVault"} <= set(ambervault.__all__)
    assert sys.modules["ambervault.aio"].AsyncKVault is AsyncKVault
