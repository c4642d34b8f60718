"""File objects over stored values: :class:`VaultReader` (``vault.open(key)``) and
:class:`VaultWriter` (``vault.open(key, "wb")``); the descriptor of a destination file that
values can be copied to natively; pipes grown for streaming through them."""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from .exceptions import ClosedError, InvalidArgument

if TYPE_CHECKING:
    from ._ambervault import BlobReaderCore, BlobWriterCore


class VaultReader(io.RawIOBase):
    """A seekable, read-only binary file over one stored value.

    Reads fetch only the chunks they touch, so a range of a multi-gigabyte video costs the
    range, not the video. If the value is overwritten or deleted while the reader is open, the
    next read raises :class:`~ambervault.ValueChangedError` instead of returning mixed bytes.

    >>> import ambervault
    >>> vault = ambervault.KVault(":memory:")
    >>> vault["clip"] = b"0123456789"
    >>> with vault.open("clip") as f:
    ...     _ = f.seek(4)
    ...     f.read(3)
    b'456'
    """

    def __init__(self, core: BlobReaderCore, name: Any) -> None:
        super().__init__()
        self._core = core
        self._size = core.size()
        self.name = name

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("reader is closed")

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    @property
    def size(self) -> int:
        """Length of the value in bytes."""
        return self._size

    def __len__(self) -> int:
        return self._size

    def read(self, size: Optional[int] = -1) -> bytes:
        """Read up to ``size`` bytes (everything left when ``size`` is negative or None)."""
        self._check_open()
        if size is None:
            size = -1
        return self._core.read(int(size))

    def readall(self) -> bytes:
        """Read everything from the current position to the end."""
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer; returns the number of bytes read."""
        self._check_open()
        view = memoryview(buffer).cast("B")
        data = self._core.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` relative to ``whence`` (``SEEK_SET``, ``SEEK_CUR``, ``SEEK_END``)."""
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._core.tell() + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise InvalidArgument(f"whence must be 0, 1 or 2, not {whence!r}")
        if target < 0:
            raise InvalidArgument(f"negative seek position {target}")
        self._core.seek(target)
        return target

    def tell(self) -> int:
        """Current position."""
        self._check_open()
        return self._core.tell()

    def close(self) -> None:
        """Release the reader. Idempotent."""
        if not self.closed:
            self._core.close()
        super().close()


class VaultWriter(io.RawIOBase):
    """A write-only binary file that becomes the value of ``key`` when closed without error.

    Bytes are written to the vault in chunks as they arrive (memory use stays at about one
    chunk), under a pending id: readers keep seeing the old value until :meth:`close`. Leaving a
    ``with`` block through an exception, calling :meth:`discard`, or dropping the writer without
    closing it discards everything written.

    >>> import ambervault
    >>> vault = ambervault.KVault(":memory:")
    >>> with vault.open("log", "wb") as f:
    ...     _ = f.write(b"hello ")
    ...     _ = f.write(b"world")
    >>> vault["log"]
    b'hello world'
    """

    def __init__(self, core: BlobWriterCore, key: Any, finish: Callable[[BlobWriterCore, Any], int]):
        super().__init__()
        self._core = core
        self._key = key
        self._finish = finish
        self.name = key

    def writable(self) -> bool:
        """Always True."""
        return True

    def write(self, data: Any) -> int:
        """Append bytes-like ``data``; returns its length."""
        if self.closed:
            raise ClosedError("writer is closed")
        return self._core.write(data)

    def tell(self) -> int:
        """Number of bytes written so far."""
        return self._core.bytes_written

    def discard(self) -> None:
        """Throw away everything written and close; the old value (if any) stays."""
        if not self.closed:
            try:
                self._core.abort()
            finally:
                super().close()

    def close(self) -> None:
        """Make the written bytes the key's value (atomically) and close. Idempotent."""
        if self.closed:
            return
        try:
            self._finish(self._core, self._key)
        except BaseException:
            self._core.abort()
            raise
        finally:
            super().close()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        # Never commit from the garbage collector: an unclosed writer is an unfinished one.
        try:
            if not self.closed:
                self._core.abort()
                io.RawIOBase.close(self)
        except Exception:
            pass


def _plain_file_descriptor(f: Any, buffered_types: tuple[type, ...], reading: bool) -> Optional[int]:
    """The descriptor of ``f`` if it is an open ``io.FileIO`` (or one of ``buffered_types`` over
    one) that can be read (``reading``) or written; ``None`` for anything else."""
    raw = f.raw if type(f) in buffered_types else f
    if type(raw) is not io.FileIO or raw.closed:
        return None
    if not (raw.readable() if reading else raw.writable()):
        return None
    try:
        return raw.fileno()
    except (OSError, ValueError):
        return None


def source_descriptor(reader: Any) -> Optional[int]:
    """The descriptor of ``reader`` if it is a plain binary file open for reading (an unbuffered
    ``io.FileIO`` or a buffered reader over one); ``None`` for anything else."""
    return _plain_file_descriptor(reader, (io.BufferedReader, io.BufferedRandom), reading=True)


#: The most a pipe is grown to: the default limit for unprivileged processes on Linux
#: (``/proc/sys/fs/pipe-max-size``), and enough for one read or write per 1 MiB chunk.
PIPE_BYTES = 1 << 20
# fcntl's names for these exist from Python 3.10; the numbers are Linux's.
_F_SETPIPE_SZ = 1031
_F_GETPIPE_SZ = 1032


def grow_pipe(fd: Optional[int], size: int) -> None:
    """If ``fd`` is a pipe on Linux, raise its capacity towards ``size`` bytes (at most
    :data:`PIPE_BYTES`; never lowered). A default pipe holds 64 KiB, so a stream of 1 MiB chunks
    through it switches between the two processes at least 16 times per chunk; a 1 GiB
    ``put_file`` from a pipe fed by another process took 5.3-8.7 s before, 3.2-4.5 s after
    (four alternations). Growing is a hint:
    where the system refuses (the per-user limit on pipe memory), the pipe stays as it was."""
    if fd is None or not sys.platform.startswith("linux"):
        return
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        import fcntl

        want = min(max(size, 0), PIPE_BYTES)
        if fcntl.fcntl(fd, _F_GETPIPE_SZ) < want:
            fcntl.fcntl(fd, _F_SETPIPE_SZ, want)
    except OSError:
        pass


def file_descriptor(writer: Any) -> Optional[int]:
    """The descriptor of ``writer`` if it is a plain binary file open for writing (an unbuffered
    ``io.FileIO`` or a buffered writer over one), which can be written to directly; ``None`` for
    anything else (in-memory buffers, subclasses that may intercept writes, compressed files)."""
    return _plain_file_descriptor(writer, (io.BufferedWriter, io.BufferedRandom), reading=False)
