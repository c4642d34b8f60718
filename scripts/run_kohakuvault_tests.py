"""Run the public KV, vector and text tests of the kohakuvault 1.1.0 sdist against ambervault.

The sdist is downloaded from PyPI at test time into ``.compat/`` (git-ignored, never committed).
A throwaway ``kohakuvault`` package that re-exports ambervault is put first on ``sys.path``, so
the tests exercise ambervault through the names kohakuvault uses. Deliberate differences are
listed in ``docs/compatibility.md``; the only tests excluded are those in ``NOT_SUPPORTED``.

Usage: ``python scripts/run_kohakuvault_tests.py [extra pytest args]``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "1.1.0"
TEST_FILES = [
    "tests/test_basic.py",
    "tests/test_cache_advanced.py",
    "tests/test_columnar.py",
    "tests/test_dynamic_chunks.py",
    "tests/test_varsize_operations.py",
    "tests/test_column_cache.py",
    "tests/test_setitem.py",
    "tests/test_slicing.py",
    "tests/test_swmr_blocking.py",
    "tests/test_swmr_hang.py",
    "tests/test_threading_hang.py",
    "tests/test_auto_pack.py",
    "tests/test_kv_headers.py",
    "tests/test_structured_columns.py",
    "tests/test_vector_kvault.py",
    "tests/test_kv_batch.py",
    "tests/test_kv_mapping.py",
    "tests/test_kv_flush_isolation.py",
    "tests/test_cache_consistency.py",
    "tests/test_text_vault.py",
    "tests/test_text_vault_insert_many.py",
]
# Tests ambervault deliberately does not pass, each with its reason (see docs/compatibility.md).
NOT_SUPPORTED = {
    # These read or fake kohakuvault's own tables (kohakuvault_meta, a bare `kv` table); an
    # ambervault file has its own format (moving an old file in is a migration, not an open).
    "tests/test_kv_headers.py::test_meta_table_created": "kohakuvault's private tables",
    "tests/test_kv_headers.py::test_feature_registration": "kohakuvault's private tables",
    "tests/test_kv_headers.py::test_backward_compatibility_with_old_db": "kohakuvault's file layout",
    # Reads a private attribute of kohakuvault's column class (`_elem_size`).
    "tests/test_structured_columns.py::TestValidatorBehavior::test_fixed_vs_varsize_detection": (
        "private attribute"
    ),
    # They inject failures with SQL triggers on kohakuvault's private `kv` table, read it (or a
    # kohakuvault 0.9 file's `legacy_kv` table) with sqlite3, or compare streamed bytes with its
    # stored header layout.
    "tests/test_kv_batch.py::test_batch_failure_rolls_back_and_retains_cache": "kohakuvault's private tables",
    "tests/test_kv_batch.py::test_bulk_rewrites_legacy_bytes_identically": "kohakuvault's file layout",
    "tests/test_kv_batch.py::test_uri_fallback_and_streamed_stored_headers": "kohakuvault's byte layout",
    "tests/test_kv_mapping.py::test_clear_atomic_failure_preserves_pending": "kohakuvault's private tables",
    "tests/test_kv_mapping.py::test_background_failure_is_observable_and_retryable": (
        "kohakuvault's private tables"
    ),
    "tests/test_cache_consistency.py::test_failed_flush_preserves_acknowledged_writes": (
        "kohakuvault's private tables"
    ),
    # They read the state of kohakuvault's native cache (pending/in-flight counts) through its
    # private `_native()` handle, or call that handle after close.
    **{
        f"tests/test_kv_flush_isolation.py::{name}": "kohakuvault's private _native() handle"
        for name in [
            "test_blocked_flush_allows_committed_inflight_and_newer_pending_reads",
            "test_capacity_includes_inflight_and_reports_backpressure_without_data_loss",
            "test_injected_flush_failure_retains_newer_pending_overlay_and_retry",
            *(
                f"test_later_mutation_cannot_resurrect_pending_or_inflight[inflight-{op}]"
                for op in ("direct", "stream", "delete", "bulk")
            ),
            *(
                f"test_lifecycle_transition_resolves_concurrent_flush_and_pending_overlay[{op}]"
                for op in ("disable", "reset", "close")
            ),
        ]
    },
    "tests/test_kv_mapping.py::test_close_releases_database_despite_retained_exception_and_native": (
        "kohakuvault's private _native() handle"
    ),
    # Diagnostics of kohakuvault's pool of reader connections: ambervault's reads share the
    # vault's connection, so there is no pool to report on (reader_cache_kb/reader_idle_limit
    # are accepted and checked only).
    **{
        f"tests/test_kv_mapping.py::test_reader_pool_memory_diagnostic[{n}]": "no reader pool"
        for n in (0, 1, 8)
    },
    # Stores an arbitrary object by pickling it (its __reduce__ runs on write and read): ambervault
    # never pickles implicitly (see docs/compatibility.md); the vector case needs VectorKVault.
    "tests/test_kv_mapping.py::test_serializer_and_deserializer_can_reenter_without_deadlock[kv]": (
        "no implicit pickle"
    ),
    "tests/test_kv_mapping.py::test_serializer_and_deserializer_can_reenter_without_deadlock[vector]": (
        "no implicit pickle"
    ),
    # Expects a streaming put_file to hold the write lock while it waits on its source, so that
    # a flush waits behind it; an ambervault stream holds the lock only per chunk.
    "tests/test_cache_consistency.py::test_waiting_flush_respects_new_cache_lock": "streams lock per chunk",
    # They count rows of kohakuvault's private tables (`text_vault`, `text_vault_values`) with
    # sqlite3, or inject a failure with a trigger on `text_vault_values`; ambervault keeps a
    # text table's documents in `<table>__text` and its index in `<table>__text_fts`.
    **{
        f"tests/test_text_vault_insert_many.py::{name}": "kohakuvault's private tables"
        for name in [
            *(f"test_invalid_item_inserts_nothing[{case}]" for case in ("bad0", "not a pair", "bad2")),
            "test_unpackable_value_inserts_nothing",
            "test_failed_write_rolls_back_the_batch",
        ]
    },
    # Step slices work in ambervault, like list slices; these tests expect them to raise.
    "tests/test_setitem.py::TestFixedSizeSliceSetitem::test_slice_setitem_step_not_supported": "steps work",
    "tests/test_slicing.py::TestFixedSizeSlicing::test_slice_step_not_supported": "steps work",
    "tests/test_slicing.py::TestVariableSizeSlicing::test_slice_step_not_supported_varsize": "steps work",
}
ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".compat"

SHIM = '''"""Throwaway shim: the kohakuvault name, backed by ambervault."""
from ambervault import *  # noqa: F401,F403
from ambervault import (  # noqa: F401
    KVault, ColumnVault, KohakuVaultError, NotFound, DatabaseBusy, InvalidArgument, IoError,
)
'''


def fetch_sdist() -> Path:
    """Download (once) and return the sdist tarball."""
    WORK.mkdir(exist_ok=True)
    found = sorted(WORK.glob(f"kohakuvault-{VERSION}.tar.gz"))
    if found:
        return found[0]
    # Only the kohakuvault sdist, nothing built: no dependencies, and pip reads the sdist's
    # metadata with the maturin already in this environment instead of building one from source
    # in an isolated environment (which ``--no-binary :all:`` forced, taking minutes).
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-binary",
            "kohakuvault",
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
    (shim_dir / "column_proxy.py").write_text("from ambervault import Column, ColumnVault  # noqa: F401\n")
    (shim_dir / "errors.py").write_text("from ambervault.exceptions import *  # noqa: F401,F403\n")
    # Some test files import helpers from each other as `tests.<module>`.
    (tests_dir / "__init__.py").write_text("")
    (WORK / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    # The shim first; then the caller's PYTHONPATH, so `PYTHONPATH=<checkout>/python` tests that
    # checkout's package rather than the one installed in the environment.
    paths = [str(WORK / "shim"), str(WORK), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
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
        *[f"--deselect={test}" for test in NOT_SUPPORTED],
        *sys.argv[1:],
    ]
    return subprocess.call(cmd, env=env, cwd=WORK)


if __name__ == "__main__":
    sys.exit(main())
