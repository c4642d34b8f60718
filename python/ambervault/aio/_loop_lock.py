"""LoopLock: an ``asyncio.Lock`` for whichever event loop is running."""

from __future__ import annotations

import asyncio
from typing import Optional


class LoopLock:
    """Hands out one ``asyncio.Lock`` per running event loop.

    An asyncio lock belongs to the loop it was first used on, while an async vault may be
    created outside any loop and then used from ``asyncio.run()`` after ``asyncio.run()``. The
    lock is made on first use and replaced when a different loop asks; using one vault from two
    loops at the same time is not supported.
    """

    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._lock: Optional[asyncio.Lock] = None

    def get(self) -> asyncio.Lock:
        """The lock of the running loop (``RuntimeError`` outside a running loop)."""
        loop = asyncio.get_running_loop()
        lock = self._lock
        if lock is None or self._loop is not loop:
            lock = asyncio.Lock()
            self._lock, self._loop = lock, loop
        return lock
