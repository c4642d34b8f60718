"""Fuzz ambervault with hostile and damaged vault files (issue 23).

Builds seed vault files (key-value tables with inline, chunked, deduplicated, expiring and
typed values, history and cache policies; columns of every dtype family), then for each case
damages a copy (bit flips, overwritten bytes, truncation, zeroed and swapped pages, cycles in
SQLite's page links, and rows rewritten with ``sqlite3`` to hold impossible sizes, chunk sizes,
blob ids, reference counts, encodings, typed-value bytes, column metadata and chunk rows) and
opens, reads, writes and checks it in a child process with limits on time, CPU and memory.

A case fails on a crash, a hang, a memory blow-up, a Rust panic, an exception that is not an
``ambervault.VaultError``, or a wrong value that ``check()`` does not report after damage the
format could notice. Wrong values after damage no checksum covers are counted apart
("undetectable by design"). Exit status 1 if any case failed.

    python scripts/fuzz_vault_files.py --seed 1 --cases 3000 --out fuzz-out --json summary.json
    python scripts/fuzz_vault_files.py --seed 1 --case 1234 --out fuzz-out   # one case again
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, List, Optional

from hostile_files.campaign import CaseResult, Limits, Summary, run_campaign
from hostile_files.verdict import CLASSES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (cases are reproducible from it)")
    parser.add_argument("--cases", type=int, default=200, help="number of cases to run")
    parser.add_argument("--first", type=int, default=0, help="number of the first case")
    parser.add_argument("--case", type=int, help="run only this case number")
    parser.add_argument("--out", type=Path, help="directory that keeps every failing case")
    parser.add_argument("--json", type=Path, help="write the summary here as JSON")
    parser.add_argument("--jobs", type=int, default=2, help="children at a time")
    parser.add_argument("--timeout", type=float, default=30.0, help="wall-clock seconds per child")
    parser.add_argument("--cpu", type=int, default=20, help="CPU seconds per child")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space per child, MiB")
    parser.add_argument(
        "--exclude", action="append", default=[], help="skip mutation classes matching a pattern (repeatable)"
    )
    parser.add_argument("--quiet", action="store_true", help="no line per failing case")
    return parser


#: Cases between two writes of the ``--json`` summary during a run.
SUMMARY_EVERY = 250


def _progress(args: argparse.Namespace) -> Callable[[CaseResult, Summary], None]:
    """Print each failing case (unless ``--quiet``); rewrite the summary every few hundred
    cases, so a long run that is stopped still leaves its figures."""

    def report(result: CaseResult, summary: Summary) -> None:
        verdict = result.verdict
        if verdict.failed and not args.quiet:
            classes = ", ".join(m.mutation_class for m in result.mutations)
            print(f"case {result.number}: {verdict.outcome} ({verdict.reason}) after {classes}", flush=True)
        if args.json is not None and summary.cases % SUMMARY_EVERY == 0:
            args.json.write_text(json.dumps(summary.to_json(), indent=1))

    return report


def main(argv: Optional[List[str]] = None) -> int:
    """Run the campaign the arguments describe; print the summary; 1 if any case failed."""
    args = _parser().parse_args(argv)
    first, cases = (args.case, 1) if args.case is not None else (args.first, args.cases)
    limits = Limits(args.timeout, args.cpu, args.memory_mb << 20)
    summary = run_campaign(
        args.seed,
        cases,
        jobs=args.jobs,
        keep=args.out,
        exclude=args.exclude,
        limits=limits,
        first=first,
        progress=_progress(args),
    )
    figures = summary.to_json()
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    print(f"{summary.cases} cases in {summary.seconds:.1f} s (seed {args.seed})")
    for outcome in CLASSES:
        print(f"  {outcome:24} {summary.outcomes[outcome]}")
    if figures["failing_classes"]:
        print("mutation classes with failures:", ", ".join(figures["failing_classes"]))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
