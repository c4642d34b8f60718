"""Sorting what a child saw into outcome classes.

Failures (each one a bug to fix):

- ``crash``: the child died by a signal (segfault, abort) without a report.
- ``timeout``: it ran past the wall-clock or CPU limit (a hang, or a loop over damaged links).
- ``memory``: it hit the address-space limit (``MemoryError``, or a Rust allocation failure).
- ``panic``: a Rust panic reached Python (``PanicException``) or was printed on stderr.
- ``untyped-error``: an exception that is not an :class:`ambervault.VaultError`.
- ``silent-wrong-value``: a read returned something other than the seed's value (or a write
  read back wrong) while ``check()`` reported nothing, after damage the format could notice.

Not failures:

- ``undetectable-by-design``: a wrong value with a clean ``check()``, after damage to bytes no
  checksum or redundant field covers (inline values, column chunks, encodings, ...). Counted
  apart: evidence for deciding whether the format should carry per-chunk checksums.
- ``damage-reported``: ``check()`` listed problems, or the damage was refused with a
  ``VaultError`` subclass.
- ``ok-clean``: everything read back as in the seed and ``check()`` is clean (the damage hit
  bytes nothing reads, such as a free page).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .mutation import Applied

FAILURES = ("crash", "timeout", "memory", "panic", "untyped-error", "silent-wrong-value")
NOT_FAILURES = ("undetectable-by-design", "damage-reported", "ok-clean")
CLASSES = FAILURES + NOT_FAILURES

#: What Rust prints when an allocation fails (then it aborts).
_RUST_OOM = "memory allocation of"
_RUST_PANIC = "panicked at"


@dataclass
class Verdict:
    """A case's outcome class and the evidence for it."""

    outcome: str
    reason: str
    wrong: List[str] = field(default_factory=list)
    errors: List[Dict[str, Any]] = field(default_factory=list)
    check: Optional[List[str]] = None

    @property
    def failed(self) -> bool:
        """Whether the outcome is one of the failure classes."""
        return self.outcome in FAILURES


def _is_value(observation: Optional[str]) -> bool:
    return observation is not None and not observation.startswith("e:")


def wrong_values(report: Dict[str, Any], baseline: Dict[str, Any]) -> List[str]:
    """Labels whose value differs from the seed's (both reads returned a value or absence)."""
    seen: Dict[str, str] = report.get("observations", {})
    expected: Dict[str, str] = baseline["observations"]
    return sorted(
        label
        for label, value in seen.items()
        if _is_value(value) and _is_value(expected.get(label)) and value != expected[label]
    )


def classify(
    mutations: Sequence[Applied],
    baseline: Dict[str, Any],
    returncode: Optional[int],
    report: Optional[Dict[str, Any]],
    stderr: str,
    timed_out: bool,
) -> Verdict:
    """The outcome of one case. ``returncode`` is ``None`` when the child was killed at the
    wall-clock limit (``timed_out``); ``report`` is the child's JSON report, if it wrote one."""
    if timed_out:
        return Verdict("timeout", "wall-clock limit")
    if returncode is not None and returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            return Verdict("timeout", "CPU limit (SIGXCPU)")
        if _RUST_OOM in stderr:
            return Verdict("memory", f"allocation failed, then signal {sig}")
        if _RUST_PANIC in stderr:
            return Verdict("panic", f"panic, then signal {sig}")
        return Verdict("crash", f"killed by signal {signal.Signals(sig).name}")
    if report is None:
        if "MemoryError" in stderr:
            return Verdict("memory", "MemoryError before the report")
        if _RUST_PANIC in stderr:
            return Verdict("panic", "panic before the report")
        return Verdict("crash", f"exit status {returncode} without a report")
    errors = report["errors"]
    check = report.get("check")
    wrong = wrong_values(report, baseline)
    verdict = Verdict("ok-clean", "", wrong, errors, check)
    panics = [e for e in errors if e["type"] == "PanicException"]
    if panics or _RUST_PANIC in stderr:
        verdict.outcome, verdict.reason = (
            "panic",
            (panics[0]["label"] if panics else "panic message on stderr"),
        )
    elif any(e["type"] == "MemoryError" for e in errors):
        verdict.outcome, verdict.reason = "memory", "MemoryError"
    elif any(not e["typed"] for e in errors):
        first = next(e for e in errors if not e["typed"])
        verdict.outcome, verdict.reason = (
            "untyped-error",
            f"{first['module']}.{first['type']} at {first['label']}",
        )
    elif (wrong or report["readback_wrong"]) and check == []:
        protected = all(m.protected for m in mutations)
        if report["readback_wrong"]:
            verdict.outcome, verdict.reason = "silent-wrong-value", "a write read back wrong"
        elif protected:
            verdict.outcome, verdict.reason = "silent-wrong-value", "check() clean after protected damage"
        else:
            verdict.outcome, verdict.reason = "undetectable-by-design", "no checksum covers the damaged bytes"
    elif check or errors or wrong:
        verdict.outcome = "damage-reported"
        verdict.reason = "check() problems" if check else "typed errors only"
    return verdict
