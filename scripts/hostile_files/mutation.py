"""The record of one mutation applied to a copy of a seed file."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict


@dataclass(frozen=True)
class Applied:
    """One mutation as it was applied.

    :param kind: what was done (``bitflip``, ``zero-page``, ``row:chunk-size-zero``, ...).
    :param target: where, for byte mutations the kind of page hit (``content``, ``key-rows``,
        ...); empty for row mutations, whose kind already says where.
    :param protected: whether the format stores something the damage contradicts (a hash, a
        count, an index entry, SQLite's page structure), so ``check()`` could notice it; a wrong
        value read after an unprotected mutation is "undetectable by design".
    :param detail: the exact change, to reproduce or read the case.
    """

    kind: str
    target: str
    protected: bool
    detail: str

    @property
    def mutation_class(self) -> str:
        """The class a case is counted under: the kind, and the target when there is one."""
        return f"{self.kind}@{self.target}" if self.target else self.kind

    def to_json(self) -> Dict[str, Any]:
        """The record as a JSON-ready dict (with its class)."""
        return {**asdict(self), "class": self.mutation_class}
