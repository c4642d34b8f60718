"""AsyncTransaction: ``async with vault.transaction():`` for the async vaults."""

from __future__ import annotations

import contextvars
from typing import Any, Awaitable, Callable, Optional, Tuple

from ..exceptions import ClosedError, InvalidArgument
from ..transaction import Transaction
from ._runner import ThreadRunner, TransactionScope


class AsyncTransaction:
    """An explicit transaction of an async vault, used as ``async with vault.transaction():``.

    Every call of the vault awaited inside the block (and inside tasks started from it) is
    part of the transaction, whichever table of the file it writes: it becomes visible at the
    end of the block, or is rolled back when the block raises or its task is cancelled. The
    native transaction belongs to one thread, so the block's calls all run on the runner's
    transaction thread, one at a time. Calls from other tasks wait (on the event loop) until
    the transaction ends instead of joining it, and so does a second transaction. Nested
    blocks are savepoints.

    Don't await, inside the block, a task started outside it that uses the same vault: that
    task waits for the transaction to end, and the transaction for the task.
    """

    def __init__(
        self, runner: ThreadRunner, begin: Callable[[], Awaitable[Callable[[], Transaction]]]
    ) -> None:
        self._runner = runner
        self._begin = begin
        self._native: Optional[Transaction] = None
        self._scope: Optional[TransactionScope] = None
        self._token: Optional[contextvars.Token[Tuple[TransactionScope, ...]]] = None
        self._entered = False

    @property
    def active(self) -> bool:
        """Whether the transaction is open (entered, and not yet committed or rolled back)."""
        return self._native is not None and self._native.active

    async def __aenter__(self) -> AsyncTransaction:
        if self._entered:
            raise InvalidArgument("a transaction object can be entered once; call vault.transaction() again")
        self._entered = True
        start = await self._begin()  # opens the vault if needed, before any lock is taken
        if not self._runner.in_transaction():
            self._scope, self._token = await self._runner.open_scope()
        try:
            await self._runner.finish(self._start_native, start)
        except BaseException:
            try:
                # Begun, but the task was cancelled meanwhile: nothing of it may stay open.
                if self._native is not None and self._native.active:
                    await self._runner.finish(self._native.rollback)
            finally:
                self._end_scope()
            raise
        return self

    def _start_native(self, start: Callable[[], Transaction]) -> None:
        # Runs on the transaction thread, which then owns the native transaction.
        self._native = start()

    def _leave(self) -> None:
        """Give the vault back to other tasks (outermost transaction only). Idempotent."""
        if self._scope is not None:
            self._runner.close_scope(self._scope)

    async def commit(self) -> None:
        """Make every write of the transaction visible, atomically. Once the commit has
        started it finishes even if the task is cancelled meanwhile.

        :raises ClosedError: when the transaction is already finished (or was never entered).
        """
        native = self._native
        if native is None or not native.active:
            raise ClosedError("transaction is already finished")
        try:
            await self._runner.finish(native.commit)
        finally:
            self._leave()

    async def rollback(self) -> None:
        """Discard every write of the transaction.

        :raises ClosedError: when the transaction is already finished (or was never entered).
        """
        native = self._native
        if native is None or not native.active:
            raise ClosedError("transaction is already finished")
        try:
            await self._runner.finish(native.rollback)
        finally:
            self._leave()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.active:
                if exc_type is None:
                    await self.commit()
                else:
                    await self.rollback()
        finally:
            self._end_scope()

    def _end_scope(self) -> None:
        """Leave the transaction's scope: other tasks go on, and this context's calls take the
        pool again."""
        self._leave()
        token, self._token = self._token, None
        if token is not None:
            token.var.reset(token)

    def __repr__(self) -> str:
        state = "active" if self.active else "finished" if self._entered else "not entered"
        return f"<ambervault.aio.AsyncTransaction {state}>"
