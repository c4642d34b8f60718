"""Shared test setup: the hypothesis profiles, and a fresh vault file per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ambervault

try:
    from hypothesis import settings
except ImportError:  # the installed-wheel check (scripts/test_wheel.py) runs without hypothesis
    settings = None

if settings is not None:
    # Registered once for the whole run (the registry is global). AMBERVAULT_HYPOTHESIS=slow
    # runs the model tests longer; tests that need other values pass their own @settings.
    settings.register_profile("fast", max_examples=40, stateful_step_count=30, deadline=None)
    settings.register_profile("slow", max_examples=500, stateful_step_count=80, deadline=None)
    settings.load_profile(os.environ.get("AMBERVAULT_HYPOTHESIS", "fast"))


def pytest_configure(config):
    """With ``AMBERVAULT_TEST_KEY`` (``make test-encryption``) every vault is encrypted; a build
    that cannot do that would run the suites on plain files and pass without testing anything."""
    if os.environ.get("AMBERVAULT_TEST_KEY"):
        from ambervault._ambervault import TEST_HOOKS

        if not (TEST_HOOKS and ambervault.encryption_available()):
            raise pytest.UsageError(
                "AMBERVAULT_TEST_KEY is set, but this build cannot encrypt every vault: it needs "
                "the test-hooks and encryption features (make test-encryption)"
            )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a vault file that does not exist yet."""
    return tmp_path / "vault.db"


@pytest.fixture
def vault(db_path: Path):
    """An open file-backed vault, closed after the test."""
    v = ambervault.KVault(db_path)
    yield v
    v.close()
