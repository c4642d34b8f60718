"""The ``ambervault`` command line: every subcommand, --json output, exit codes, one-line
errors, and that it runs both as ``python -m ambervault`` and as the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ambervault import ColumnVault, KVault


def run(*args: str, stdin: bytes = b"", cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ambervault", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def vault_file(tmp_path):
    path = tmp_path / "v.db"
    with KVault(path, chunk_size=1024) as kv:
        kv["images/cat.png"] = b"\x89PNG" + bytes(range(256)) * 20
        kv["notes.txt"] = b"hello"
        kv[b"\xff\x00raw"] = b"binary key"
        cv = ColumnVault(kv)
        cv.create_column("loss", "f64").extend(np.linspace(1, 0, 5000))
        cv.create_column("log", "str").extend(["start", "step", "stop"])
    return path


def test_info_text_and_json(vault_file):
    text = run("info", vault_file)
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert "format version  1" in out and "3 keys" in out and "loss" in out
    data = json.loads(run("info", vault_file, "--json").stdout)
    assert data["tables"][0]["name"] == "kvault" and data["tables"][0]["keys"] == 3
    assert {c["name"]: c["length"] for c in data["columns"]} == {"log": 3, "loss": 5000}


def test_ls_get_put_rm(vault_file, tmp_path):
    assert run("ls", vault_file).stdout.decode().split("\n")[:2] == ["images/cat.png", "notes.txt"]
    assert json.loads(run("ls", vault_file, "--prefix", "img", "--json").stdout) == []
    long = json.loads(run("ls", vault_file, "--long", "--json").stdout)
    assert long[1] == {"key": "notes.txt", "size": 5, "version": 1, "updated_ms": long[1]["updated_ms"]}
    assert run("get", vault_file, "notes.txt").stdout == b"hello"
    assert run("get", vault_file, "hex:ff00726177").stdout == b"binary key"
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(300_000))
    assert run("put", vault_file, "big", src).returncode == 0
    assert run("put", vault_file, "piped", "-", stdin=b"from stdin").returncode == 0
    out = tmp_path / "out.bin"
    assert run("get", vault_file, "big", "-o", out).returncode == 0
    assert out.read_bytes() == src.read_bytes()
    assert run("get", vault_file, "piped").stdout == b"from stdin"
    assert run("rm", vault_file, "piped").returncode == 0
    missing = run("rm", vault_file, "piped")
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1


def test_import_export_round_trip(tmp_path):
    src = tmp_path / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "x.bin").write_bytes(os.urandom(5000))
    (src / "top.txt").write_bytes(b"top")
    vault = tmp_path / "t.db"
    imported = json.loads(run("import", vault, src, "--prefix", "set1/", "--json").stdout)
    assert imported == {"files": 2, "bytes": 5003}
    dest = tmp_path / "out"
    exported = json.loads(run("export", vault, dest, "--prefix", "set1/", "--json").stdout)
    assert exported["files"] == 2
    assert (dest / "set1" / "a" / "b" / "x.bin").read_bytes() == (src / "a" / "b" / "x.bin").read_bytes()


def test_export_never_writes_outside_the_destination(tmp_path):
    vault = tmp_path / "evil.db"
    with KVault(vault) as kv:
        kv["../escape.txt"] = b"no"
        kv["/etc/absolute"] = b"no"
        kv["fine.txt"] = b"yes"
    result = run("export", vault, tmp_path / "out", "--json")
    report = json.loads(result.stdout)
    assert report["files"] == 1 and len(report["skipped"]) == 2
    assert not (tmp_path / "escape.txt").exists()


def test_columns_commands(vault_file, tmp_path):
    cols = json.loads(run("cols", vault_file, "--json").stdout)
    assert [c["name"] for c in cols] == ["log", "loss"]
    head = json.loads(run("col", vault_file, "log", "--head", "2", "--json").stdout)
    assert head["values"] == ["start", "step"]
    tail = run("col", vault_file, "loss", "--tail", "1").stdout.decode().strip()
    assert tail == "4999\t0.0"
    for fmt in ("csv", "npy", "parquet"):
        out = tmp_path / f"loss.{fmt}"
        assert run("col-export", vault_file, "loss", "--format", fmt, "-o", out).returncode == 0
    assert np.array_equal(np.load(tmp_path / "loss.npy"), np.linspace(1, 0, 5000))
    assert (tmp_path / "loss.csv").read_text().splitlines()[1] == "0,1.0"
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "loss.parquet").num_rows == 5000


def test_plot_draws_a_png(vault_file, tmp_path):
    out = tmp_path / "loss.png"
    result = run("plot", vault_file, "loss", "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    not_numeric = run("plot", vault_file, "log")
    assert not_numeric.returncode == 2 and b"not numeric" in not_numeric.stderr


def test_check_backup_optimize(vault_file, tmp_path):
    assert json.loads(run("check", vault_file, "--json").stdout) == {"problems": []}
    assert run("backup", vault_file, tmp_path / "copy.db").returncode == 0
    assert run("check", tmp_path / "copy.db").stdout.decode().strip() == "ok"
    assert run("backup", vault_file, tmp_path / "copy.db").returncode == 3  # exists: refused
    assert run("optimize", vault_file).returncode == 0


def test_errors_are_one_line_with_documented_exit_codes(tmp_path):
    missing = run("info", tmp_path / "nope.db")
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    bad = run("ls", junk)
    assert bad.returncode == 3
    assert bad.stderr.decode().startswith("ambervault: error:") and bad.stderr.decode().count("\n") == 1
    assert b"Traceback" not in bad.stderr
    usage = run("frobnicate")
    assert usage.returncode == 2


def test_installed_script_runs(vault_file):
    script = shutil.which("ambervault", path=str(Path(sys.executable).parent))
    assert script, "the console script is installed with the package"
    result = subprocess.run([script, "ls", str(vault_file)], capture_output=True, timeout=60)
    assert result.returncode == 0 and b"notes.txt" in result.stdout
