"""Shared fixtures: a fresh vault file per test, and a helper to run code in a child process."""

from __future__ import annotations

from pathlib import Path

import pytest

import ambervault


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
