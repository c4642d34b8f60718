"""stats(), check(), backup() and optimize(): figures that add up, problems found instead of
raised, and consistent backups taken while another process writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from ambervault import ColumnVault, IoError, KVault


def test_stats_add_up(tmp_path):
    with KVault(tmp_path / "s.db", chunk_size=100) as kv:
        cv = ColumnVault(kv)
        kv["small"] = b"x" * 10
        kv["big"] = b"y" * 250
        cv.create_column("t", "f64").extend([1.0, 2.0, 3.0])
        cv.create_column("s", "str").extend(["ab", "c"])
        stats = kv.stats()
        assert stats["keys"] == 2
        assert stats["logical_bytes"] == 260
        # "y" * 250 in 100-byte chunks: two identical chunks are stored once.
        assert stats["chunks"] == 3 and stats["chunk_bytes"] == 250 and stats["unique_chunks"] == 2
        assert stats["stored_bytes"] == 10 + 150
        assert stats["bytes_ratio"] == pytest.approx(260 / 160)
        assert stats["columns"] == {
            "s": {"dtype": "str", "length": 2, "bytes": 3},
            "t": {"dtype": "f64", "length": 3, "bytes": 24},
        }
        assert stats["file_bytes"] > 0 and stats["page_size"] == 4096
        assert stats["pending_uploads"] == 0


def corrupt(path, sql):
    """Apply ``sql`` with the stdlib sqlite3 module (the vault is closed: no shared locks)."""
    con = sqlite3.connect(path)
    con.executescript(sql)
    con.close()


def test_check_reports_problems_instead_of_raising(tmp_path):
    path = tmp_path / "c.db"
    with KVault(path, chunk_size=100) as kv:
        cv = ColumnVault(kv)
        kv["big"] = bytes(range(250))
        kv["small"] = b"s"
        cv.create_column("n", "i64").extend(range(10))
        cv.create_column("v", "bytes").extend([b"a", b"bb"])
        assert kv.check() == []
    corrupt(
        path,
        """
        DELETE FROM kvault__chunks WHERE id = (SELECT min(id) FROM kvault__chunks);
        UPDATE kvault SET size = 99 WHERE key = CAST('small' AS BLOB);
        INSERT INTO kvault__chunks (id, cid) VALUES (999 << 32, 12345);
        UPDATE kvault__content SET refs = refs + 5 WHERE cid = (SELECT max(cid) FROM kvault__content);
        UPDATE ambervault_columns SET length = 11 WHERE name = 'n';
        UPDATE ambervault_columns SET data_bytes = 1 WHERE name = 'v';
        """,
    )
    with KVault(path, chunk_size=100) as kv:
        problems = kv.check()
        text = "\n".join(problems)
        assert "key big has 2 chunks" in text
        assert "key rows are inconsistent" in text
        assert "belong to no key" in text
        assert "missing stored contents" in text
        assert "wrong reference count" in text
        assert 'column "n"' in text
        assert 'column "v"' in text
        assert len(problems) >= 5


def test_check_finds_sqlite_level_damage(tmp_path):
    path = tmp_path / "d.db"
    with KVault(path) as kv:
        kv.put_many([(f"k{i:05}", b"v" * 200) for i in range(2000)])
    corrupt(path, "PRAGMA writable_schema = ON; UPDATE sqlite_master SET sql = sql WHERE 0;")
    data = bytearray(path.read_bytes())
    # Scribble over a B-tree page in the middle of the file (not the header or schema page).
    offset = (len(data) // 4096 // 2) * 4096
    data[offset + 8 : offset + 100] = b"\xee" * 92
    path.write_bytes(bytes(data))
    code = """
import sys, ambervault
try:
    problems = ambervault.KVault(sys.argv[1]).check()
    print("problems", len(problems))
except ambervault.VaultError as e:
    print("refused", type(e).__name__)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[0] == "refused" or int(words[1]) > 0


WRITER = r"""
import sys, time, ambervault
kv = ambervault.KVault(sys.argv[1], chunk_size=4096, retries=100, backoff_base=0.002)
cv = ambervault.ColumnVault(kv)
col = cv.ensure("ticks", "i64")
i = 0
print("ready", flush=True)
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    with kv.transaction():
        kv[f"k{i:06}"] = bytes([i % 256]) * 10_000
        col.append(i)
    i += 1
print(i)
"""


def test_backup_under_concurrent_writes_is_consistent(tmp_path):
    src = tmp_path / "live.db"
    KVault(src).close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    with KVault(src) as kv:
        for n in range(3):
            kv.backup(tmp_path / f"copy{n}.db")
            time.sleep(0.2)
        with pytest.raises(IoError, match="already exists"):
            kv.backup(tmp_path / "copy0.db")
    out, _ = writer.communicate(timeout=60)
    assert int(out.strip()) > 0
    for n in range(3):
        with KVault(tmp_path / f"copy{n}.db") as copy:
            assert copy.check() == []
            ticks = list(ColumnVault(copy)["ticks"])
            # Each transaction wrote one key and one tick: the copy holds whole transactions.
            assert ticks == list(range(len(ticks)))
            assert sorted(copy) == [f"k{i:06}" for i in range(len(ticks))]
            for i in (0, len(ticks) - 1):
                if ticks:
                    assert copy[f"k{i:06}"] == bytes([i % 256]) * 10_000
