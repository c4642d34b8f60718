"""ThreadRunner: where the blocking calls of an async vault run.

The native calls release the GIL, so they run on a small pool of threads while the event loop
keeps serving other tasks. An explicit transaction is different: the native transaction belongs
to the thread that began it (that thread's calls join it; every other thread waits until it
ends). So each runner also has one *transaction thread*. Code inside ``async with
vault.transaction():`` (and tasks started from there, which inherit its context) is marked
through a context variable, and its calls, through any runner on the same file, go to that
thread; other calls of the runner wait, on the event loop, until the transaction ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from typing import Any, Callable, Optional, Set, Tuple, TypeVar

from .._file import check_int
from ..exceptions import ClosedError, InvalidArgument
from ._loop_lock import LoopLock

T = TypeVar("T")

#: Default bound of a runner's pool (see :class:`ThreadRunner`).
DEFAULT_MAX_THREADS = 4


class TransactionScope:
    """Marks code running inside one outermost transaction on one vault file. Tasks started
    inside the transaction inherit the mark (contexts are copied into new tasks); once the
    transaction ends the mark stays in their context but is no longer ``open``.

    It is keyed by the file, not the runner: two async wrappers of one ``KVault`` (an
    ``AsyncKVault(kv)`` and an ``AsyncColumnVault(kv)``) have a runner each, and a call through
    either, inside a transaction of the other, must go to the thread that owns it (on any other
    thread it would wait for the very transaction it is part of).
    """

    def __init__(self, file: object, thread: concurrent.futures.ThreadPoolExecutor) -> None:
        self.file = file
        self.thread = thread
        self.open = True


# The transactions the current context is inside of (one per file at most).
_SCOPES: contextvars.ContextVar[Tuple[TransactionScope, ...]] = contextvars.ContextVar(
    "ambervault_aio_transactions", default=()
)


async def _wait_for_job(job: concurrent.futures.Future[T], revocable: bool) -> T:
    """The result of ``job``, a call handed to a thread. When the waiting task is cancelled, a
    call that has not started yet is withdrawn (if ``revocable``) and the cancellation goes
    through at once; a call that has started runs to its end first, and then the cancellation
    goes through. So once this returns or raises, nothing of the call is still running: a
    write is either done or not done, never still happening behind the caller's back."""
    waiter = asyncio.wrap_future(job)
    cancelled: Optional[asyncio.CancelledError] = None
    while True:
        try:
            result = await asyncio.shield(waiter)
        except asyncio.CancelledError as err:
            cancelled = cancelled or err
            if waiter.done():
                break
            if revocable and job.cancel():
                raise cancelled from None
            continue
        except BaseException:
            if cancelled is not None:
                raise cancelled from None
            raise
        if cancelled is not None:
            raise cancelled
        return result
    if not waiter.cancelled():
        waiter.exception()  # retrieved, so asyncio does not report it as lost
    raise cancelled


class ThreadRunner:
    """Runs a vault's blocking calls on at most ``max_threads`` pool threads, plus one thread
    for the transaction that is open, if any (see the module docstring).

    :param max_threads: how many calls may run at once on the pool (an int >= 1). The calls of
        one file share one SQLite connection, so a few threads are enough to keep reads,
        writes and value encoding overlapping.
    """

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        check_int("max_threads", max_threads)
        if max_threads < 1:
            raise InvalidArgument(f"max_threads must be >= 1, not {max_threads}")
        self.max_threads = max_threads
        self._pool = concurrent.futures.ThreadPoolExecutor(max_threads, "ambervault-aio")
        # One outermost transaction at a time per runner, so one thread serves them all.
        self._transaction_thread = concurrent.futures.ThreadPoolExecutor(1, "ambervault-aio-transaction")
        self._transaction_lock = LoopLock()
        self._jobs: Set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        #: The open vault file the calls work on (set once the vault is open): what transaction
        #: scopes are matched against.
        self.file: Optional[object] = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("vault is closed")

    # -- transactions ----------------------------------------------------------------------------
    def current_scope(self) -> Optional[TransactionScope]:
        """The open transaction on this runner's file, if the running code is inside it."""
        if self.file is None:
            return None
        for scope in _SCOPES.get():
            if scope.file is self.file and scope.open:
                return scope
        return None

    def in_transaction(self) -> bool:
        """Whether the running code is inside a transaction on this runner's file."""
        return self.current_scope() is not None

    async def open_scope(self) -> Tuple[TransactionScope, contextvars.Token[Tuple[TransactionScope, ...]]]:
        """Wait until no other transaction of this runner is open, then mark the running
        context as inside a new outermost one on the runner's file. End it with
        :meth:`close_scope` and reset the returned token in the same context."""
        self._check_open()
        if self.file is None:
            raise InvalidArgument("the vault must be open before a transaction begins")
        await self._transaction_lock.get().acquire()
        if self._closed:
            self._transaction_lock.get().release()
            raise ClosedError("vault is closed")
        scope = TransactionScope(self.file, self._transaction_thread)
        token = _SCOPES.set((*_SCOPES.get(), scope))
        return scope, token

    def close_scope(self, scope: TransactionScope) -> None:
        """End an outermost transaction's scope: later calls take the pool again, and waiting
        tasks go on. Idempotent."""
        if scope.open:
            scope.open = False
            self._transaction_lock.get().release()

    async def _after_transactions(self) -> None:
        """Wait (on the loop, holding no thread) while a transaction of this runner is open."""
        lock = self._transaction_lock.get()
        if lock.locked():
            async with lock:
                pass

    # -- calls -----------------------------------------------------------------------------------
    def _submit(self, func: Callable[..., T], args: Tuple[Any, ...]) -> concurrent.futures.Future[T]:
        scope = self.current_scope()
        executor = self._pool if scope is None else scope.thread
        job = executor.submit(func, *args)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return job

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on a thread: the transaction's thread inside a transaction, else a
        pool thread once no transaction is open. Cancelling the awaiting task withdraws a call
        that has not started; a started call finishes before the cancellation is raised.

        :raises ClosedError: once the runner is closed.
        """
        self._check_open()
        if not self.in_transaction():
            await self._after_transactions()
            self._check_open()
        return await _wait_for_job(self._submit(func, args), revocable=True)

    async def finish(self, func: Callable[..., T], *args: Any) -> T:
        """Like :meth:`call`, for clean-up that must happen even while the awaiting task is
        being cancelled (discarding a stream, ending a transaction, closing): the call is never
        withdrawn and does not wait for other transactions (the native layer makes it wait
        there if it must). A cancellation is raised after it ran."""
        self._check_open()
        return await _wait_for_job(self._submit(func, args), revocable=False)

    # -- closing ---------------------------------------------------------------------------------
    async def close(self, last: Optional[Callable[[], Any]] = None) -> None:
        """Wait for an open transaction and the calls under way, run ``last`` (closing the
        vault) on a thread, and stop the threads. Later calls raise :class:`ClosedError`.
        Idempotent.

        :raises InvalidArgument: when called inside one of this runner's transactions (it
            would wait for itself).
        """
        if self._closed:
            return
        if self.in_transaction():
            raise InvalidArgument("cannot close a vault inside its own transaction; leave it first")
        lock = self._transaction_lock.get()
        await lock.acquire()
        cancelled: Optional[asyncio.CancelledError] = None
        try:
            if self._closed:
                return
            self._closed = True
            # Closing is not abandoned halfway: a cancellation is raised once it is done.
            for job in list(self._jobs):
                try:
                    await _wait_for_job(job, revocable=False)
                except asyncio.CancelledError as err:
                    cancelled = cancelled or err
                except Exception:
                    pass  # the call's own caller receives its error
            if last is not None:
                try:
                    await _wait_for_job(self._pool.submit(last), revocable=False)
                except asyncio.CancelledError as err:
                    cancelled = cancelled or err
        finally:
            lock.release()
            self._pool.shutdown(wait=False)
            self._transaction_thread.shutdown(wait=False)
        if cancelled is not None:
            raise cancelled
