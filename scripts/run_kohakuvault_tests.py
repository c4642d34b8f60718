"""Run the public KV tests of the kohakuvault 1.1.0 sdist against ambervault.

The sdist is downloaded from PyPI at test time into ``.compat/`` (git-ignored, never committed).
A throwaway ``kohakuvault`` package that re-exports ambervault is put first on ``sys.path``, so
the tests exercise ambervault through the names the seed system used. Deliberate differences are
listed in ``docs/compatibility.md``; none of the tests run here is excluded.

Usage: ``python scripts/run_kohakuvault_tests.py [extra pytest args]``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "1.1.0"
TEST_FILES = ["tests/test_basic.py", "tests/test_cache_advanced.py"]
ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".compat"

SHIM = '''"""Throwaway shim: the kohakuvault name, backed by ambervault."""
from ambervault import *  # noqa: F401,F403
from ambervault import (  # noqa: F401
    KVault, KohakuVaultError, NotFound, DatabaseBusy, InvalidArgument, IoError,
)
'''


def fetch_sdist() -> Path:
    """Download (once) and return the sdist tarball."""
    WORK.mkdir(exist_ok=True)
    found = sorted(WORK.glob(f"kohakuvault-{VERSION}.tar.gz"))
    if found:
        return found[0]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"kohakuvault=={VERSION}",
            "-d",
            str(WORK),
        ],
        check=True,
    )
    return next(WORK.glob(f"kohakuvault-{VERSION}.tar.gz"))


def extract_tests(sdist: Path) -> Path:
    """Extract the selected test files into .compat/tests and return that directory."""
    tests_dir = WORK / "tests"
    tests_dir.mkdir(exist_ok=True)
    prefix = f"kohakuvault-{VERSION}/"
    with tarfile.open(sdist) as archive:
        for name in TEST_FILES:
            member = archive.getmember(prefix + name)
            data = archive.extractfile(member)
            assert data is not None
            (tests_dir / Path(name).name).write_bytes(data.read())
    return tests_dir


def main() -> int:
    tests_dir = extract_tests(fetch_sdist())
    shim_dir = WORK / "shim" / "kohakuvault"
    shim_dir.mkdir(parents=True, exist_ok=True)
    (shim_dir / "__init__.py").write_text(SHIM)
    (WORK / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ, PYTHONPATH=str(WORK / "shim"))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(WORK / "pytest.ini"),
        "--rootdir",
        str(WORK),
        *[str(tests_dir / Path(n).name) for n in TEST_FILES],
        *sys.argv[1:],
    ]
    return subprocess.call(cmd, env=env, cwd=WORK)


if __name__ == "__main__":
    sys.exit(main())
