"""Which table or index owns each page of an intact SQLite file (SQLite's ``dbstat`` table), and
whether the format could notice damage to that owner's bytes.

Why: a byte flipped in a page of ``T__content`` changes bytes that a stored BLAKE3 hash covers,
so a wrong value read from it is one the format *could* have caught; a byte flipped inside an
inline value (a page of ``T``) or a column chunk has no checksum over it, so a wrong value
there is undetectable by design. The verdict needs to know which of the two a case was.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Dict, List, Sequence

#: Owners (besides the key-value tables' own key rows) whose bytes no checksum or redundant
#: field covers: history rows, the cache policy and access records, the format markers, column
#: metadata (tails) and column chunk rows.
_UNPROTECTED = re.compile(
    r"^([A-Za-z_]\w*__history|[A-Za-z_]\w*__cache|[A-Za-z_]\w*__access"
    r"|ambervault_columns|ambervault_column_chunks|ambervault_column_packed|ambervault_meta)$"
)

#: The owner name of pages that belong to no table (the free list, or past the tables).
FREE = "(free)"
#: The owner of page 1's first 100 bytes, the database header.
HEADER = "(header)"


def page_owners(path: str) -> Dict[int, str]:
    """Page number (1-based) -> owner name, for every page of the file at ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT pageno, name FROM dbstat").fetchall()
        count = conn.execute("PRAGMA page_count").fetchone()[0]
    finally:
        conn.close()
    owners = {page: FREE for page in range(1, count + 1)}
    owners.update({int(page): str(name) for page, name in rows})
    return owners


def page_size(path: str) -> int:
    """The page size recorded in the database header."""
    with open(path, "rb") as f:
        header = f.read(100)
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def is_protected(owner: str, kv_tables: Sequence[str]) -> bool:
    """Whether damage to ``owner``'s pages contradicts something the file also stores (a hash,
    a count, an index entry, SQLite's own structure), so that ``check()`` could notice it.
    ``kv_tables`` names the key-value tables, whose key rows (inline values) are unprotected."""
    return owner != FREE and owner not in kv_tables and not _UNPROTECTED.match(owner)


def owner_category(owner: str, kv_tables: Sequence[str]) -> str:
    """A coarse name for an owner, used to name mutation classes (``bitflip@content`` ...)."""
    if owner in (FREE, HEADER):
        return owner.strip("()")
    if owner == "sqlite_schema":
        return "schema"
    if owner.endswith("__content"):
        return "content"
    if owner.endswith("__chunks"):
        return "chunk-rows"
    if owner == "ambervault_column_chunks":
        return "column-chunks"
    if owner == "ambervault_columns":
        return "column-meta"
    if owner.endswith("__history"):
        return "history"
    if owner.startswith("sqlite_autoindex") or "__by_" in owner or owner.endswith("_by_key"):
        return "index"
    if owner in kv_tables:
        return "key-rows"
    return "other"


def pages_by_category(owners: Dict[int, str], kv_tables: Sequence[str]) -> Dict[str, List[int]]:
    """Category -> pages owned by it (page 1 counts as the header's)."""
    result: Dict[str, List[int]] = {}
    for page, owner in owners.items():
        category = "header" if page == 1 else owner_category(owner, kv_tables)
        result.setdefault(category, []).append(page)
    return result


def pages_of_type(path: str, kind: str) -> List[int]:
    """Pages of one of ``dbstat``'s page types (``internal``, ``leaf``, ``overflow``)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT pageno FROM dbstat WHERE pagetype = ?", (kind,)).fetchall()
    finally:
        conn.close()
    return sorted(int(page) for (page,) in rows)
