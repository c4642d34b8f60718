"""SIGKILL during a bundle import or export (``harness.KILLS`` kill points each).

An import is one transaction: after a kill the target holds exactly its old keys, values and
versions (or, had the kill come after the last key, exactly the bundle's), and ``check()`` is
clean (no chunks of the interrupted streams are left). An export writes under a temporary name
and writes the manifest last: after a kill nothing exists under the bundle's name, and whatever
temporary file is left does not validate.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil

import pytest
from harness import KILLS, run_until_killed

from ambervault import BundleError, KVault, validate_bundle

CHUNK = 1024
KEYS = 40


def value(i: int) -> bytes:
    # Inline and chunked sizes; the last keys are large, so no import ends before its kill.
    size = 150_000 if i >= 30 else 100 + (i * 9973) % 30_000
    return hashlib.shake_256(b"bundle:%d" % i).digest(size)


def state(path) -> dict:
    """Every key with its encoding, stored bytes and version."""
    with KVault(path, chunk_size=CHUNK) as kv:
        assert kv.check() == []
        out = {}
        for key in kv.keys():
            with kv.open(key) as f:
                out[key] = (kv.info(key)["encoding"], f.read(), kv.version(key))
        return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A bundle of ``data/`` keys and a target whose ``data/`` keys partly differ from it."""
    root = tmp_path_factory.mktemp("bundles-crash")
    with KVault(root / "source.db", chunk_size=CHUNK) as source:
        for i in range(KEYS):
            source[f"data/k{i:03d}"] = value(i) if i % 5 else {"i": i, "blob": value(i)}
        bundle = root / "data.bundle"
        source.export_bundle(bundle, prefix="data/")
    template = root / "target.db"
    with KVault(template, chunk_size=CHUNK) as target:
        for i in range(0, KEYS, 3):
            target[f"data/k{i:03d}"] = value(i) if i % 2 else b"an older value %d" % i
        for i in range(8):
            target[f"data/k{i * 5:03d}-stale"] = value(100 + i)  # deleted by the import
            target[f"other/{i}"] = value(200 + i)  # outside the prefix: kept
        target.checkpoint()
    return root, bundle, template


def test_kill_during_import_leaves_the_old_state_or_the_complete_new_one(files, tmp_path):
    _, bundle, template = files
    old = state(template)
    done = tmp_path / "done.db"
    shutil.copy(template, done)
    with KVault(done, chunk_size=CHUNK) as kv:
        steps = sum(1 for stage in _stages(kv, bundle) if stage == "import")
    new = state(done)
    assert new != old and {k for k in new if not k.startswith("data/")} == {f"other/{i}" for i in range(8)}
    rng = random.Random("bundle-import-seed")
    for k in range(KILLS):
        path = tmp_path / f"{k}.db"
        shutil.copy(template, path)

        def work(ack, path=path):
            with KVault(path, chunk_size=CHUNK) as kv:
                acked = 0

                def progress(stage, nbytes):
                    nonlocal acked
                    if stage == "import":
                        ack(acked)
                        acked += 1

                kv.import_bundle(bundle, progress=progress)

        acked = run_until_killed(work, rng)
        got = state(path)
        # Every acknowledged key was written inside the open transaction: none of it survives
        # unless the kill came after the last key (then the commit may have happened).
        assert got == old or (acked == steps and got == new), (k, acked)


def _stages(kv, bundle):
    stages = []
    kv.import_bundle(bundle, progress=lambda stage, nbytes: stages.append(stage))
    return stages


def test_kill_during_export_leaves_nothing_that_validates(files, tmp_path):
    root = files[0]
    rng = random.Random("bundle-export-seed")
    for k in range(KILLS):
        folder = tmp_path / f"{k}"
        folder.mkdir()
        out = folder / "data.bundle"

        def work(ack, out=out):
            with KVault(root / "source.db", chunk_size=CHUNK) as source:
                source.export_bundle(out, progress=lambda stage, nbytes: ack(0))

        run_until_killed(work, rng)
        assert not out.exists()
        leftovers = [folder / name for name in os.listdir(folder) if not name.endswith("-journal")]
        assert leftovers, "the kill came before the export created its temporary file"
        for partial in leftovers:
            with pytest.raises(BundleError):
                validate_bundle(partial)
    assert validate_bundle(files[1])["keys"] == KEYS
