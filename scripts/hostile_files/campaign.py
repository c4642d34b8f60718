"""Running fuzz cases: each case copies a seed, applies one to three mutations chosen by a
random generator seeded with ``(seed, case number)`` (so any case can be re-run alone), runs the
probe in a child process under resource limits, and classifies what it reports.

Children run a few at a time from one thread (``Popen`` and ``poll``), so ``preexec_fn``, which
sets the limits, never runs in a process that has other threads.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import byte_mutations, row_mutations
from .mutation import Applied
from .seeds import Seed, build_seeds
from .verdict import CLASSES, Verdict, classify

SCRIPTS = Path(__file__).resolve().parent.parent
#: Chance that a mutation works on raw bytes rather than on rows.
BYTE_SHARE = 0.45
#: How many mutations a case applies, and how often.
MUTATION_COUNTS = ((1, 70), (2, 20), (3, 10))


@dataclass(frozen=True)
class Limits:
    """What a child may use: wall-clock seconds, CPU seconds, address space in bytes."""

    wall_seconds: float = 30.0
    cpu_seconds: int = 20
    address_space: int = 1 << 30


@dataclass
class CaseResult:
    """One case: its seed, mutations, verdict and timing."""

    number: int
    seed: str
    mutations: List[Applied]
    verdict: Verdict
    seconds: float
    stderr: str = ""

    def to_json(self) -> Dict[str, Any]:
        """The case as a JSON-ready dict (what ``--out`` keeps for a failing case)."""
        v = self.verdict
        return {
            "case": self.number,
            "seed": self.seed,
            "mutations": [m.to_json() for m in self.mutations],
            "outcome": v.outcome,
            "reason": v.reason,
            "wrong": v.wrong[:20],
            "errors": v.errors[:20],
            "check": v.check,
            "seconds": round(self.seconds, 3),
            "stderr": self.stderr[-3000:],
        }


@dataclass
class Summary:
    """A campaign's figures: outcomes overall and per mutation class, and every failure."""

    seed: int
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_class: Dict[str, Counter[str]] = field(default_factory=dict)
    failures: List[Dict[str, Any]] = field(default_factory=list)

    def add(self, result: CaseResult) -> None:
        """Count one case."""
        self.cases += 1
        self.outcomes[result.verdict.outcome] += 1
        for m in result.mutations:
            self.by_class.setdefault(m.mutation_class, Counter())[result.verdict.outcome] += 1
        if result.verdict.failed:
            self.failures.append(result.to_json())

    def failing_classes(self) -> List[str]:
        """Mutation classes that failed on their own (in a case with no other mutation), then
        the combinations that failed although none of their classes did alone."""
        alone = {f["mutations"][0]["class"] for f in self.failures if len(f["mutations"]) == 1}
        combined = set()
        for failure in self.failures:
            classes = [m["class"] for m in failure["mutations"]]
            if len(classes) > 1 and not alone.intersection(classes):
                combined.add(" + ".join(classes))
        return sorted(alone) + sorted(combined)

    def to_json(self) -> Dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {
            "seed": self.seed,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "outcomes": {c: self.outcomes[c] for c in CLASSES},
            "by_class": {k: dict(sorted(v.items())) for k, v in sorted(self.by_class.items())},
            "failing_classes": self.failing_classes(),
            "failures": self.failures,
        }


def _set_limits(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    paths = [str(SCRIPTS), *sys.path]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    # A short panic message, without the backtrace, is enough to classify and keep.
    env["RUST_BACKTRACE"] = "0"
    # Thousands of children import the same modules: let the first one cache their bytecode.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Child:
    """A running probe: its process, its output files and its deadline."""

    def __init__(self, spec_path: Path, limits: Limits) -> None:
        directory = spec_path.parent
        self.stdout_path = directory / "stdout.json"
        self.stderr_path = directory / "stderr.txt"
        self._out: IO[bytes] = open(self.stdout_path, "wb")
        self._err: IO[bytes] = open(self.stderr_path, "wb")
        self.started = time.monotonic()
        self.deadline = self.started + limits.wall_seconds
        self.timed_out = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hostile_files.probe", str(spec_path)],
            cwd=directory,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            preexec_fn=_set_limits(limits),
        )

    def poll(self) -> bool:
        """Whether the child has ended (killing it first if it is past its deadline)."""
        if self.process.poll() is not None:
            return True
        if time.monotonic() > self.deadline:
            self.timed_out = True
            self.process.kill()
            self.process.wait()
            return True
        return False

    def finish(self) -> Tuple[Optional[int], Optional[Dict[str, Any]], str, float]:
        """``(returncode or None if timed out, report, stderr, seconds)``."""
        self._out.close()
        self._err.close()
        seconds = time.monotonic() - self.started
        stderr = self.stderr_path.read_text(errors="replace")
        report: Optional[Dict[str, Any]] = None
        try:
            lines = self.stdout_path.read_text().strip().splitlines()
            report = json.loads(lines[-1]) if lines else None
        except (ValueError, OSError):
            report = None
        return (None if self.timed_out else self.process.returncode), report, stderr, seconds


def _excluded(applied: Applied, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(applied.mutation_class, pattern) for pattern in exclude)


def mutate(path: Path, seed: Seed, rng: random.Random, exclude: Sequence[str]) -> Optional[List[Applied]]:
    """Apply one to three mutations to ``path`` (a copy of ``seed``); ``None`` if one of them
    fell in an excluded class (the caller starts again from a fresh copy)."""
    target = row_mutations.Target(tuple(t.name for t in seed.tables), seed.has_columns)
    counts, weights = zip(*MUTATION_COUNTS)
    # Row mutations first: sqlite3 needs an intact file to find their rows. At most one byte
    # mutation, last, for the same reason (it reads the page map of the file it damages).
    kinds = sorted(rng.random() < BYTE_SHARE for _ in range(rng.choices(counts, weights)[0]))
    kinds = [k for i, k in enumerate(kinds) if not k or i == len(kinds) - 1]
    applied: List[Applied] = []
    for is_byte in kinds:
        done: Optional[Applied]
        if is_byte:
            name = rng.choice(byte_mutations.byte_mutation_names())
            done = byte_mutations.apply_byte_mutation(str(path), target.kv_tables, name, rng)
        else:
            done = None
            names = row_mutations.row_mutation_names(target)
            for _attempt in range(20):  # some apply only to some seeds
                done = row_mutations.apply_row_mutation(str(path), target, rng.choice(names), rng)
                if done is not None:
                    break
            if done is None:
                continue
        if _excluded(done, exclude):
            return None
        applied.append(done)
    return applied


def _write_spec(directory: Path, seed: Seed, db: Path, expected_keys: Dict[str, Any]) -> Path:
    spec = {**seed.to_json(), "path": str(db), "expected_keys": expected_keys}
    spec_path = directory / "spec.json"
    spec_path.write_text(json.dumps(spec))
    return spec_path


def prepare_case(
    workdir: Path, seeds: Sequence[Seed], number: int, master_seed: int, exclude: Sequence[str] = ()
) -> Tuple[Path, Seed, List[Applied]]:
    """Case ``number``'s directory under ``workdir`` with its damaged file (``damaged.db``,
    kept as it was before the child touched it, and ``vault.db``, the child's copy), its seed
    and its mutations. The same arguments always give the same damage."""
    rng = random.Random(f"{master_seed}:{number}")
    directory = workdir / f"case-{number:06d}"
    directory.mkdir(parents=True, exist_ok=True)
    seed = rng.choice(list(seeds))
    db = directory / "vault.db"
    applied: Optional[List[Applied]] = None
    while applied is None:
        shutil.copy(seed.path, db)
        applied = mutate(db, seed, rng, exclude)
    for suffix in ("-wal", "-shm"):  # sqlite3 leaves none after its last close, but be sure
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(db, directory / "damaged.db")
    return directory, seed, applied


class Campaign:
    """Seeds, their baselines, and the cases run against them."""

    def __init__(self, workdir: Path, limits: Limits, exclude: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.limits = limits
        self.exclude = list(exclude)
        self.seeds = build_seeds(workdir / "seeds")
        self.baselines = {seed.name: self._baseline(seed) for seed in self.seeds}

    def _run_probe(self, directory: Path, seed: Seed, expected_keys: Dict[str, Any]) -> Child:
        db = directory / "vault.db"
        return Child(_write_spec(directory, seed, db, expected_keys), self.limits)

    def _baseline(self, seed: Seed) -> Dict[str, Any]:
        """The probe's report on an undamaged copy: what every read must return. Run twice, to
        be sure the reads are repeatable."""
        reports = []
        for attempt in range(2):
            directory = self.workdir / f"baseline-{seed.name}-{attempt}"
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copy(seed.path, directory / "vault.db")
            child = self._run_probe(directory, seed, {})
            while not child.poll():
                time.sleep(0.01)
            code, report, stderr, _ = child.finish()
            if code != 0 or report is None or report["errors"] or report["check"] or report["readback_wrong"]:
                raise RuntimeError(f"seed {seed.name} does not read back cleanly: {stderr[-2000:]} {report}")
            reports.append(report)
        if reports[0]["observations"] != reports[1]["observations"]:
            raise RuntimeError(f"seed {seed.name}: two reads of the undamaged file differ")
        return reports[0]

    def run(
        self,
        numbers: Sequence[int],
        master_seed: int,
        jobs: int,
        keep: Optional[Path] = None,
        progress: Optional[Callable[[CaseResult, Summary], None]] = None,
    ) -> Summary:
        """Run the cases ``numbers``, ``jobs`` children at a time. Failing cases are copied to
        ``keep`` (damaged file, spec, report, stderr, ``case.json``); ``progress`` is called
        after each case with its result and the figures so far."""
        summary = Summary(master_seed)
        started = time.monotonic()
        queue = list(numbers)
        running: List[Tuple[int, Path, Seed, List[Applied], Child]] = []
        while queue or running:
            while queue and len(running) < jobs:
                number = queue.pop(0)
                directory, seed, applied = prepare_case(
                    self.workdir, self.seeds, number, master_seed, self.exclude
                )
                expected = self.baselines[seed.name]["keys"]
                running.append((number, directory, seed, applied, self._run_probe(directory, seed, expected)))
            still = []
            for entry in running:
                number, directory, seed, applied, child = entry
                if not child.poll():
                    still.append(entry)
                    continue
                code, report, stderr, seconds = child.finish()
                verdict = classify(applied, self.baselines[seed.name], code, report, stderr, child.timed_out)
                result = CaseResult(number, seed.name, applied, verdict, seconds, stderr)
                summary.add(result)
                if verdict.failed and keep is not None:
                    kept = keep / f"case-{number:06d}-{verdict.outcome}"
                    shutil.rmtree(kept, ignore_errors=True)
                    shutil.copytree(directory, kept, ignore=shutil.ignore_patterns("vault.db*"))
                    (kept / "case.json").write_text(json.dumps(result.to_json(), indent=1))
                shutil.rmtree(directory, ignore_errors=True)
                if progress is not None:
                    summary.seconds = time.monotonic() - started
                    progress(result, summary)
            running = still
            if running:
                time.sleep(0.005)
        summary.seconds = time.monotonic() - started
        return summary


def run_campaign(
    master_seed: int,
    cases: int,
    jobs: int = 2,
    keep: Optional[Path] = None,
    exclude: Sequence[str] = (),
    limits: Limits = Limits(),
    first: int = 0,
    progress: Optional[Callable[[CaseResult, Summary], None]] = None,
) -> Summary:
    """Build the seeds in a temporary directory and run cases ``first .. first + cases - 1``."""
    with tempfile.TemporaryDirectory(prefix="ambervault-fuzz-") as tmp:
        campaign = Campaign(Path(tmp), limits, exclude)
        return campaign.run(range(first, first + cases), master_seed, jobs, keep, progress)
