"""Streaming values in and out: put_file, get_to_file, open(key) readers and open(key, "wb")
writers, including unknown-length sources and atomic visibility."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import threading

import pytest

from ambervault import ClosedError, InvalidArgument, KVault, NotFound, ValueChangedError


def blob(n: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"{seed}".encode()).digest(n) if n else b""


def leftovers(vault):
    stats = vault.stats()
    return stats["chunks"], stats["pending_uploads"]


@pytest.fixture
def small_chunks(db_path):
    v = KVault(db_path, chunk_size=1000)
    yield v
    v.close()


@pytest.mark.parametrize("mode", ["wb", "ab", "r+b", "unbuffered"])
@pytest.mark.parametrize("size", [0, 999, 1000, 25_000])
def test_get_to_file_into_real_files_keeps_their_position(small_chunks, tmp_path, mode, size):
    """A real file is written through its descriptor: bytes the file object still buffers go
    first, and its position afterwards is where the value ends, so later writes follow it."""
    data = blob(size, seed=5)
    small_chunks["f"] = data
    path = tmp_path / "out.bin"
    path.write_bytes(b"old-content-" * 3)
    before = b"head:"
    if mode == "unbuffered":
        f = open(path, "wb", buffering=0)
    else:
        f = open(path, mode)
    with f:
        f.write(before)  # still in the buffer of a buffered writer
        assert small_chunks.get_to_file("f", f) == size
        assert f.tell() == (36 if mode == "ab" else 0) + len(before) + size
        f.write(b":tail")
    expected = {
        "wb": before + data + b":tail",
        "unbuffered": before + data + b":tail",
        "ab": b"old-content-" * 3 + before + data + b":tail",
    }.get(mode)
    got = path.read_bytes()
    if mode == "r+b":
        # Overwrites from the start; the old file's bytes past the new end stay.
        new = before + data + b":tail"
        old = b"old-content-" * 3
        assert got == new + old[len(new) :]
    else:
        assert got == expected


def test_get_to_file_after_reading_writes_at_the_files_position(small_chunks, tmp_path):
    """A file opened for reading and writing has read ahead of its position: the value still
    lands at the position, and reads and writes afterwards continue from its end."""
    data = blob(7000, seed=7)
    small_chunks["f"] = data
    path = tmp_path / "rw.bin"
    old = bytes(range(256)) * 64
    path.write_bytes(old)
    with open(path, "r+b") as f:
        assert f.read(3) == old[:3]
        assert small_chunks.get_to_file("f", f) == len(data)
        assert f.tell() == 3 + len(data)
        assert f.read(5) == old[3 + len(data) : 8 + len(data)]
    assert path.read_bytes() == old[:3] + data + old[3 + len(data) :]


def test_get_to_file_into_a_pipe(small_chunks):
    data = blob(300_000, seed=6)
    small_chunks["f"] = data
    r, w = os.pipe()
    received = []
    reader = threading.Thread(target=lambda: received.append(_read_all(r)))
    reader.start()
    with open(w, "wb") as sink:
        assert small_chunks.get_to_file("f", sink) == len(data)
    reader.join()
    os.close(r)
    assert received == [data]


def _read_all(fd: int) -> bytes:
    parts = []
    while True:
        part = os.read(fd, 1 << 16)
        if not part:
            return b"".join(parts)
        parts.append(part)


def test_get_to_file_into_a_read_only_file_fails_and_leaves_it(small_chunks, tmp_path):
    small_chunks["f"] = blob(5000)
    path = tmp_path / "ro.bin"
    path.write_bytes(b"keep")
    with open(path, "rb") as f, pytest.raises(io.UnsupportedOperation):
        small_chunks.get_to_file("f", f)
    assert path.read_bytes() == b"keep"


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 25_000])
def test_put_file_and_get_to_file_round_trip(small_chunks, size):
    data = blob(size)
    assert small_chunks.put_file("f", io.BytesIO(data)) == size
    out = io.BytesIO()
    assert small_chunks.get_to_file("f", out) == size
    assert out.getvalue() == data
    assert small_chunks["f"] == data


def test_put_file_from_a_pipe_of_unknown_length(small_chunks):
    data = blob(300_000, 1)
    read_fd, write_fd = os.pipe()

    def produce():
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(data), 7_777):
                w.write(data[i : i + 7_777])

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_fd, "rb", buffering=0) as r:
        assert small_chunks.put_file("piped", r) == len(data)
    producer.join()
    assert small_chunks["piped"] == data


def test_put_file_from_generator_backed_reader_and_iterable(small_chunks):
    pieces = [blob(n, n) for n in (10, 5000, 1, 2999)]

    class GeneratorReader:
        def __init__(self):
            self._it = iter(pieces)

        def read(self, n=-1):
            return next(self._it, b"")

    assert small_chunks.put_file("gen", GeneratorReader()) == 8010
    assert small_chunks["gen"] == b"".join(pieces)
    assert small_chunks.put_file("iter", iter(pieces)) == 8010
    assert small_chunks["iter"] == b"".join(pieces)


def test_put_file_with_size_reads_exactly_that_much(small_chunks):
    source = io.BytesIO(blob(5000))
    assert small_chunks.put_file("f", source, size=3000) == 3000
    assert small_chunks["f"] == blob(5000)[:3000]
    assert source.tell() == 3000


def test_put_file_short_stream_with_size_stores_nothing(small_chunks):
    small_chunks["f"] = b"old"
    with pytest.raises(InvalidArgument, match="reader ended"):
        small_chunks.put_file("f", io.BytesIO(blob(2500)), size=4000)
    assert small_chunks["f"] == b"old"
    assert leftovers(small_chunks) == (0, 0)


def test_put_file_failing_reader_stores_nothing(small_chunks):
    class Exploding:
        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 3:
                raise OSError("disk went away")
            return blob(n, self.calls)

    with pytest.raises(OSError, match="disk went away"):
        small_chunks.put_file("f", Exploding())
    assert "f" not in small_chunks
    assert leftovers(small_chunks) == (0, 0)


def test_put_file_rejects_non_readers(small_chunks):
    with pytest.raises(TypeError, match="reader"):
        small_chunks.put_file("f", 42)
    with pytest.raises(TypeError, match="reader"):
        small_chunks.put_file("f", b"raw bytes are not a reader")
    with pytest.raises(TypeError, match="keys"):
        small_chunks.put_file(3, io.BytesIO(b""))
    assert len(small_chunks) == 0


def test_get_to_file_missing_key(small_chunks):
    with pytest.raises(NotFound):
        small_chunks.get_to_file("nope", io.BytesIO())


def test_reader_seek_tell_and_ranges(small_chunks):
    data = blob(10_500, 3)
    small_chunks["video"] = data
    with small_chunks.open("video") as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert f.size == len(data)
        assert f.read(10) == data[:10]
        assert f.tell() == 10
        assert f.seek(2995) == 2995
        assert f.read(10) == data[2995:3005]
        assert f.seek(-5, io.SEEK_END) == len(data) - 5
        assert f.read() == data[-5:]
        assert f.read(10) == b""
        f.seek(100)
        assert f.seek(50, io.SEEK_CUR) == 150
        buf = bytearray(2000)
        assert f.readinto(buf) == 2000
        assert bytes(buf) == data[150:2150]
        f.seek(0)
        assert f.read() == data
        with pytest.raises(InvalidArgument):
            f.seek(-1)
    with pytest.raises(ClosedError):
        f.read(1)


def test_reader_works_with_io_helpers(small_chunks):
    lines = b"".join(b"line %d\n" % i for i in range(500))
    small_chunks["log"] = lines
    with io.BufferedReader(small_chunks.open("log")) as f:
        assert f.readline() == b"line 0\n"
        assert list(f)[-1] == b"line 499\n"


def test_reader_of_missing_key_and_bad_mode(small_chunks):
    with pytest.raises(NotFound):
        small_chunks.open("missing")
    with pytest.raises(InvalidArgument, match="mode"):
        small_chunks.open("k", "r+")


def test_reader_raises_when_value_is_replaced_midway(small_chunks):
    small_chunks["v"] = blob(5000, 1)
    f = small_chunks.open("v")
    assert f.read(100) == blob(5000, 1)[:100]
    small_chunks["v"] = blob(5000, 2)
    f.seek(3000)
    with pytest.raises(ValueChangedError):
        f.read(100)


def test_writer_becomes_visible_only_on_close(small_chunks):
    small_chunks["k"] = b"old"
    with small_chunks.open("k", "wb") as w:
        for i in range(10):
            w.write(blob(900, i))
        assert w.tell() == 9000
        assert small_chunks["k"] == b"old"
    assert small_chunks["k"] == b"".join(blob(900, i) for i in range(10))


def test_writer_exception_inside_with_discards(small_chunks):
    small_chunks["k"] = b"old"
    with pytest.raises(RuntimeError):
        with small_chunks.open("k", "wb") as w:
            w.write(blob(5000))
            raise RuntimeError("boom")
    assert small_chunks["k"] == b"old"
    assert leftovers(small_chunks) == (0, 0)


def test_writer_dropped_without_close_discards(small_chunks):
    w = small_chunks.open("k", "wb")
    w.write(blob(5000))
    del w
    gc.collect()
    assert "k" not in small_chunks
    assert leftovers(small_chunks) == (0, 0)


def test_writer_discard_and_write_after_close(small_chunks):
    w = small_chunks.open("k", "wb")
    w.write(b"abc")
    w.discard()
    assert "k" not in small_chunks
    with pytest.raises(ClosedError):
        w.write(b"more")
    w2 = small_chunks.open("k", "wb")
    w2.write(bytearray(b"xyz"))
    w2.close()
    w2.close()
    assert small_chunks["k"] == b"xyz"


def test_stream_chunk_size_override(small_chunks):
    data = blob(10_000)
    small_chunks.put_file("f", io.BytesIO(data), chunk_size=300)
    assert small_chunks["f"] == data
    with pytest.raises(InvalidArgument):
        small_chunks.put_file("g", io.BytesIO(data), chunk_size=0)
    assert "g" not in small_chunks


def test_other_writers_progress_while_a_stream_is_open(db_path):
    # A stream commits chunk by chunk, so it never holds the write lock between writes.
    streaming = KVault(db_path, chunk_size=1000)
    other = KVault(db_path, retries=0, backoff_base=0.001)
    w = streaming.open("big", "wb")
    for i in range(20):
        w.write(blob(1000, i))
        other[f"k{i}"] = b"meanwhile"
    w.close()
    assert len(other) == 21
    streaming.close()
    other.close()
