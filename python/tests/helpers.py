"""Helpers shared by test modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Set when a suite runs against encrypted files (``make test-encryption``): every vault opened
#: without a key is encrypted with it (see ``ambervault._file.test_key``).
TEST_KEY = os.environ.get("AMBERVAULT_TEST_KEY")


def run_python(code: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the test's environment) and return the result."""
    env = dict(os.environ)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def same_value(a, b) -> bool:
    """Equal and of the same type, recursively: 1, 1.0 and True do not pass for each other, nan
    equals nan and -0.0 differs from 0.0 (what a typed value must round-trip exactly)."""
    import math

    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b
