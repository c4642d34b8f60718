"""Branches of a KVault's table: fork, open, diff, merge and delete (see ``docs/branches.md``).

Every table has the branch ``"main"``: the table itself. ``create_branch`` forks a branch in one
transaction, copying one key row per key and sharing every chunked value; ``branch(name)`` gives
a :class:`~ambervault.KVault` on it that shares the file, its clock and its transactions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from ._ambervault import BranchesCore, DiffCursorCore
from .exceptions import InvalidArgument
from .history import DELETED
from .transaction import Transaction

if TYPE_CHECKING:
    from ._ambervault import KVaultCore
    from .kvault import KVault

#: The branch every table has.
MAIN = "main"

#: A merge strategy: a name, or ``resolve(key, source_value, target_value) -> value`` where
#: absent values are :data:`~ambervault.DELETED` and returning ``DELETED`` deletes the key.
Strategy = Union[str, Callable[[Any, Any, Any], Any]]

_NATIVE_STRATEGIES = {
    "last_writer_wins": "last_writer_wins",
    "fail_on_conflict": "fail_on_conflict",
    "source_wins": "source",
}


class BranchInfo(NamedTuple):
    """One branch of a table."""

    name: str
    #: The branch it was forked from (None for ``"main"``).
    parent: Optional[str]
    #: When it was forked (epoch seconds; for ``"main"``, when the first fork happened, or 0).
    created_at: float


class MergeResult(NamedTuple):
    """What a merge did."""

    #: Keys the target gained.
    added: int
    #: Keys whose value the target took from the source.
    changed: int
    #: Keys the target lost.
    deleted: int
    #: Keys both branches changed to different values, settled by the strategy.
    conflicts: int


class BranchDiff:
    """The keys on which branch ``a`` and branch ``b`` differ: iterate for ``(key, change)``
    pairs in key order (``change`` is ``"added"`` (only in ``b``), ``"removed"`` (only in
    ``a``) or ``"changed"``), read in pages so a big diff streams. Each iteration compares the
    branches as they are then; run it inside ``vault.snapshot()`` for one fixed view.
    """

    def __init__(self, branches: BranchesCore, a: str, b: str, page: int = 1024) -> None:
        self._branches = branches
        self.a = a
        self.b = b
        self._page = page
        # Started now, so unknown branches fail at the call, not at the first iteration.
        self._first: Optional[DiffCursorCore] = branches.diff(a, b)

    def _cursor(self) -> DiffCursorCore:
        cursor, self._first = self._first, None
        return cursor if cursor is not None else self._branches.diff(self.a, self.b)

    def __iter__(self) -> Iterator[Tuple[Any, str]]:
        cursor = self._cursor()
        while cursor.remaining:
            yield from cursor.next_page(self._page)

    def summary(self) -> Dict[str, int]:
        """Counts: ``{"added": n, "removed": n, "changed": n}``."""
        added, removed, changed = self._cursor().summary()
        return {"added": added, "removed": removed, "changed": changed}

    def __repr__(self) -> str:
        return f"BranchDiff({self.a!r} -> {self.b!r})"


def check_name(what: str, name: Any) -> str:
    """``name`` if it is a str, else ``TypeError``."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    return name


class BranchesMixin:
    """The branch methods of :class:`~ambervault.KVault`."""

    if TYPE_CHECKING:

        @property
        def _native(self) -> KVaultCore: ...

        def _sync_writes(self) -> None: ...

        def _on_branch(self, core: KVaultCore) -> KVault: ...

        def transaction(self) -> Transaction: ...

    def _branches(self) -> BranchesCore:
        return BranchesCore(self._native)

    @property
    def branch_name(self) -> str:
        """The branch this handle reads and writes (``"main"`` unless it came from
        :meth:`branch`)."""
        return self._branches().current

    def branches(self) -> List[str]:
        """Names of the table's branches, ``"main"`` first, then in the order they were made.

        >>> from ambervault import KVault
        >>> vault = KVault(":memory:")
        >>> vault.branches()
        ['main']
        """
        return [b[0] for b in self._branches().list()]

    def branch_info(self, name: Optional[str] = None) -> BranchInfo:
        """Where branch ``name`` (this handle's when None) came from and when."""
        name = self.branch_name if name is None else check_name("name", name)
        for found, _, parent, created_ms, _ in self._branches().list():
            if found == name:
                return BranchInfo(found, parent, created_ms / 1000)
        raise InvalidArgument(f"no branch named {name!r}")

    def create_branch(self, name: str, from_: Optional[str] = None) -> KVault:
        """Fork branch ``name`` from branch ``from_`` (this handle's branch when None) and
        return a handle on it. One transaction; costs one copied key row per key of the source
        (chunked values are shared, not copied). A table with ``max_bytes`` cannot have
        branches.

        >>> from ambervault import KVault
        >>> vault = KVault(":memory:")
        >>> vault["a"] = b"1"
        >>> dev = vault.create_branch("dev")
        >>> dev["a"] = b"2"
        >>> vault["a"], dev["a"]
        (b'1', b'2')
        """
        check_name("name", name)
        if from_ is not None:
            check_name("from_", from_)
        self._sync_writes()
        self._branches().create(name, from_)
        return self.branch(name)

    def branch(self, name: str) -> KVault:
        """A :class:`~ambervault.KVault` on branch ``name`` of this table, sharing this vault's
        file, options and transactions. Closing it leaves the file open. History, time travel
        and cache limits are the main branch's only."""
        check_name("name", name)
        if name == self.branch_name:
            return self._on_branch(self._native)
        return self._on_branch(self._branches().open(name))

    def delete_branch(self, name: str) -> None:
        """Delete branch ``name`` and free the values only it held. ``"main"`` and branches
        that others were forked from cannot be deleted."""
        check_name("name", name)
        self._sync_writes()
        self._branches().delete(name)

    def diff(self, a: str, b: Optional[str] = None) -> BranchDiff:
        """What differs between branch ``a`` and branch ``b`` (this handle's when None):
        a :class:`BranchDiff`. Its cost grows with the keys written since the branches' common
        fork, not with the table's size.

        >>> from ambervault import KVault
        >>> vault = KVault(":memory:")
        >>> dev = vault.create_branch("dev")
        >>> dev["new"] = b"x"
        >>> list(vault.diff("main", "dev"))
        [('new', 'added')]
        """
        check_name("a", a)
        b = self.branch_name if b is None else check_name("b", b)
        self._sync_writes()
        return BranchDiff(self._branches(), a, b)

    def merge(
        self, source: str, into: Optional[str] = None, strategy: Strategy = "last_writer_wins"
    ) -> MergeResult:
        """Merge branch ``source`` into branch ``into`` (this handle's when None) in one
        transaction. The two must be a branch and the branch it was forked from (either way).

        A key the source changed since the fork (or since the last merge from it into the
        target) is copied over, or deleted; if the target changed it too and the values now
        differ, ``strategy`` settles it: ``"last_writer_wins"`` (the later write; a delete is a
        write at its time), ``"source_wins"``, ``"fail_on_conflict"`` (raises
        :class:`~ambervault.exceptions.Conflict`, nothing changes), or a callable
        ``resolve(key, source_value, target_value)`` returning the value to keep
        (:data:`~ambervault.DELETED` for absent values, and to delete).
        """
        check_name("source", source)
        into = self.branch_name if into is None else check_name("into", into)
        self._sync_writes()
        if isinstance(strategy, str):
            native = _NATIVE_STRATEGIES.get(strategy)
            if native is None:
                raise InvalidArgument(
                    f"strategy must be one of {sorted(_NATIVE_STRATEGIES)} or a callable, not {strategy!r}"
                )
            added, changed, deleted, conflicts, _ = self._branches().merge(source, into, native)
            return MergeResult(added, changed, deleted, conflicts)
        if not callable(strategy):
            raise TypeError(f"strategy must be a str or a callable, not {type(strategy).__name__}")
        with self.transaction():
            added, changed, deleted, conflicts, unresolved = self._branches().merge(source, into, "report")
            if unresolved:
                theirs_side, ours_side = self.branch(source), self.branch(into)
                for key in unresolved:
                    theirs = theirs_side.get(key, DELETED)
                    ours = ours_side.get(key, DELETED)
                    kept = strategy(key, theirs, ours)
                    if kept is DELETED:
                        if ours is not DELETED:
                            ours_side.delete(key)
                    else:
                        ours_side[key] = kept
                    conflicts += 1
        return MergeResult(added, changed, deleted, conflicts)
