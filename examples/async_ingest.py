"""Ingesting downloads with asyncio: ``ambervault.aio`` streams many sources at once.

Forty simulated downloads arrive chunk by chunk (async generators, as from an HTTP client) and
are streamed into the vault at the same time with ``put_file``; each value becomes visible only
when complete. Then each download's record (name, size, checksum) is written in a short
transaction over the key-value table and two columns, so the columns stay aligned and a record
never points at a missing blob. One download stalls and is cancelled halfway: it leaves nothing
behind. A ticker task shows the event loop stays free while the vault works.
Run: ``python examples/async_ingest.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from pathlib import Path
from typing import AsyncIterator, Dict, Optional

from ambervault.aio import AsyncColumnVault, AsyncKVault

DOWNLOADS = 40
CHUNK = 16 << 10


def content(n: int) -> bytes:
    """The bytes download ``n`` delivers (a few hundred KiB, different for each)."""
    return hashlib.sha256(str(n).encode()).digest() * (2000 + 500 * (n % 7))


async def download(n: int, stall: Optional[asyncio.Event] = None) -> AsyncIterator[bytes]:
    """Download ``n``, chunk by chunk, yielding to the loop between chunks like a socket. With
    ``stall``, it sets that event halfway and then never delivers another byte."""
    data = content(n)
    for offset in range(0, len(data), CHUNK):
        if stall is not None and offset >= len(data) // 2:
            stall.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        yield data[offset : offset + CHUNK]


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-aio-") as tmp:
        path = Path(tmp) / "ingest.db"
        async with AsyncKVault(path, chunk_size=64 << 10, max_threads=4) as vault:
            columns = AsyncColumnVault(vault)  # same file, same threads and transactions
            sizes = await columns.create_column("size", "i64")
            names = await columns.create_column("name", "str")

            ticks = 0
            running = True

            async def ticker() -> None:
                nonlocal ticks
                while running:
                    ticks += 1
                    await asyncio.sleep(0)

            async def ingest(n: int, stall: Optional[asyncio.Event] = None) -> None:
                name = f"file:{n:03d}"
                stored = await vault.put_file(name, download(n, stall))  # downloads overlap
                async with vault.transaction():  # the record's three parts appear together
                    await vault.put(f"sha:{n:03d}", hashlib.sha256(content(n)).hexdigest())
                    await sizes.append(stored)
                    await names.append(name)

            tick_task = asyncio.create_task(ticker())
            await asyncio.gather(*(ingest(n) for n in range(DOWNLOADS)))

            # A download cancelled halfway leaves neither a blob nor a record.
            halfway = asyncio.Event()
            doomed = asyncio.create_task(ingest(999, halfway))
            await halfway.wait()
            doomed.cancel()
            try:
                await doomed
            except asyncio.CancelledError:
                pass
            assert not await vault.exists("file:999") and not await vault.exists("sha:999")

            running = False
            await tick_task

            # Read everything back: names in key order, values in pages on the vault's threads.
            checksums: Dict[str, str] = {}
            async for key, value in vault.items(prefix="sha:"):
                assert isinstance(key, str)
                checksums[key[4:]] = value
            total = 0
            async for key in vault.keys(prefix="file:"):
                assert isinstance(key, str)
                async with vault.open(key) as blob:
                    digest = hashlib.sha256(await blob.read()).hexdigest()
                assert digest == checksums[key[5:]], f"{key} came back different"
                total += blob.size
            assert await sizes.length() == await names.length() == DOWNLOADS
            assert sum((await sizes.to_numpy()).tolist()) == total

            copy = Path(tmp) / "file-007.bin"
            assert await vault.get_to_file("file:007", copy) == len(content(7))
            assert copy.read_bytes() == content(7)

            print(f"{DOWNLOADS} downloads, {total / 2**20:.1f} MiB stored and verified")
            print(f"event loop ticked {ticks} times while the vault worked")
            assert ticks > DOWNLOADS
    print("done")


if __name__ == "__main__":
    asyncio.run(main())
