"""The usage examples of the KohakuVault README (the API ambervault follows) run with
``import ambervault`` and do what they say.

Each test body is the example as written for kohakuvault, with only the package name changed,
followed by assertions on what it visibly did. The tests run in a scratch directory, since the
examples use relative file names. ``scripts/test_wheel.py`` also runs this file against the
installed release wheel.
"""

from __future__ import annotations

import inspect

import pytest

from ambervault import ColumnVault, KVault


@pytest.fixture(autouse=True)
def in_scratch_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Inputs the examples take for granted.
image_bytes = bytes(range(256)) * 100
video_bytes = b"\x00\x00\x00\x18ftypmp42" + bytes(300_000)
data = b"payload" * 100


def test_quick_start(capsys):
    # -- example --
    # Key-Value: Store binary blobs (images, files, etc.)
    kv = KVault("data.db")
    kv["image:123"] = image_bytes
    kv["video:456"] = video_bytes

    # Columnar: Store typed sequences (timeseries, logs, events)
    cv = ColumnVault(kv)  # Shares same database
    cv.create_column("temperatures", "f64")
    cv.create_column("log_messages", "bytes")  # Variable-size strings

    temps = cv["temperatures"]
    temps.extend([23.5, 24.1, 25.0])  # Like a list

    logs = cv["log_messages"]
    logs.append(b"Server started")
    logs.append(b"Request processed in 5.2ms")

    # Access
    print(temps[0])  # 23.5
    print(list(logs))  # [b'Server started', b'Request processed in 5.2ms']
    # -- end of example --

    assert capsys.readouterr().out.splitlines() == [
        "23.5",
        "[b'Server started', b'Request processed in 5.2ms']",
    ]
    kv.close()
    with KVault("data.db") as again:  # one file holds both
        assert again["image:123"] == image_bytes
        assert again["video:456"] == video_bytes
        assert list(ColumnVault(again)["temperatures"]) == [23.5, 24.1, 25.0]


def test_basic_operations(capsys):
    # -- example --
    vault = KVault("media.db")

    # Dict-like interface
    vault["key"] = b"value"
    data = vault["key"]
    del vault["key"]
    if "key" in vault:
        ...

    # Safe retrieval
    data = vault.get("key", default=b"")

    # Iteration
    for key in vault:
        print(f"{key}: {len(vault[key])} bytes")
    # -- end of example --

    assert data == b""  # the default: the key was deleted
    assert "key" not in vault and len(vault) == 0
    assert capsys.readouterr().out == ""  # nothing left to iterate over
    vault["key"] = b"value"
    for key in vault:
        print(f"{key}: {len(vault[key])} bytes")
    assert capsys.readouterr().out == "key: 5 bytes\n"
    vault.close()


def test_streaming_large_files():
    with open("large_video.mp4", "wb") as f:
        f.write(bytes(range(256)) * 20_000)  # 5 MB: several 1 MiB chunks

    # -- example --
    vault = KVault("media.db", chunk_size=1024 * 1024)  # 1 MiB chunks

    # Stream from file → vault
    with open("large_video.mp4", "rb") as f:
        vault.put_file("video:789", f)

    # Stream from vault → file
    with open("output.mp4", "wb") as f:
        vault.get_to_file("video:789", f)
    # -- end of example --

    with open("output.mp4", "rb") as out, open("large_video.mp4", "rb") as original:
        assert out.read() == original.read()
    vault.close()


def test_bulk_operations_with_caching():
    # -- example --
    vault = KVault("media.db")
    vault.enable_cache(cap_bytes=64 * 1024 * 1024, flush_threshold=16 * 1024 * 1024)

    # Writes batched in memory
    for i in range(1000):
        vault[f"item:{i}"] = data

    vault.flush_cache()  # Commit all at once
    vault.disable_cache()
    # -- end of example --

    vault.close()
    with KVault("media.db") as again:  # the flushed writes are in the file
        assert len(again) == 1000
        assert again["item:0"] == again["item:999"] == data


def test_configuration():
    # -- example --
    vault = KVault(
        path="media.db",
        chunk_size=2 * 1024 * 1024,  # Streaming chunk size
        retries=10,  # Retry attempts for busy DB
        enable_wal=True,  # Write-Ahead Logging
        cache_kb=20000,  # SQLite cache size
    )
    # -- end of example --

    vault["k"] = b"v"
    assert vault["k"] == b"v"
    vault.close()


# The constructor signature of the API reference (docs/kvault.md): the seed's, except that
# `mmap_size` maps whole files (the seed's 256 MiB made reads past it a system call per page).
SIGNATURE = {
    "chunk_size": 1048576,
    "retries": 4,
    "backoff_base": 0.02,
    "table": "kvault",
    "enable_wal": True,
    "page_size": 4096,
    "mmap_size": 1 << 40,
    "cache_kb": 20000,
}


def test_constructor_defaults_match_the_documented_signature():
    params = inspect.signature(KVault).parameters
    assert next(iter(params)) == "path"
    for name, default in SIGNATURE.items():
        assert params[name].default == default, name


def test_columnar_storage(capsys):
    # -- example --
    cv = ColumnVault("data.db")

    # Fixed-size types: i64, f64, bytes:N
    cv.create_column("sensor_temps", "f64")
    cv.create_column("timestamps", "i64")
    cv.create_column("hashes", "bytes:32")  # 32-byte fixed

    temps = cv["sensor_temps"]
    temps.append(23.5)
    temps.extend([24.1, 25.0, 25.3])
    print(temps[0], temps[-1], len(temps))  # 23.5, 25.3, 4

    # Variable-size bytes (for strings, JSON, etc.)
    cv.create_column("log_messages", "bytes")  # No size = variable!
    logs = cv["log_messages"]
    logs.append(b"Short message")
    logs.append(b"This is a much longer log entry with details...")
    print(logs[0])  # Exact bytes, no padding

    # Iterate
    for temp in temps:
        print(temp)
    # -- end of example --

    assert capsys.readouterr().out.splitlines() == [
        "23.5 25.3 4",
        "b'Short message'",
        "23.5",
        "24.1",
        "25.0",
        "25.3",
    ]
    assert logs[1] == b"This is a much longer log entry with details..."
    cv.close()
