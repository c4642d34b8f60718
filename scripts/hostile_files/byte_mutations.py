"""Damage to a vault file's raw bytes, below SQLite: bit flips, overwritten ranges, truncation,
zeroed and swapped pages, header fields, and cycles in SQLite's page links (overflow chains,
b-tree child pointers, the free list).

Each mutation picks the kind of page it hits first (content, key rows, column chunks, ...) and
then a page of that kind, so rare kinds of pages are hit as often as common ones, and the
outcome can be counted per kind of page.
"""

from __future__ import annotations

import os
import random
from typing import Callable, Dict, List, Sequence

from .mutation import Applied
from .page_map import is_protected, page_owners, page_size, pages_by_category, pages_of_type

#: Byte offsets of the 4-byte big-endian header fields a mutation may set (SQLite file format):
#: change counter, page count, first free-list trunk, free-list count, schema cookie, schema
#: format, default cache size, largest root page, text encoding, user version, incremental vacuum,
#: application id, version-valid-for.
_HEADER_FIELDS = (24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 92)


class FileImage:
    """A file's bytes, page geometry and page owners, edited in memory and written back."""

    def __init__(self, path: str, kv_tables: Sequence[str]) -> None:
        self.path = path
        self.kv_tables = list(kv_tables)
        self.page = page_size(path)
        self.owners = page_owners(path)
        with open(path, "rb") as f:
            self.data = bytearray(f.read())

    @property
    def pages(self) -> int:
        """Number of whole pages in the file."""
        return len(self.data) // self.page

    def offset(self, page: int) -> int:
        """Byte offset of a (1-based) page."""
        return (page - 1) * self.page

    def protected(self, pages: Sequence[int]) -> bool:
        """Whether every page in ``pages`` belongs to an owner the format protects."""
        return all(is_protected(self.owners.get(p, "(free)"), self.kv_tables) for p in pages)

    def pick_page(self, rng: random.Random) -> tuple[str, int]:
        """A kind of page, chosen uniformly among the kinds present, and one page of it."""
        categories = pages_by_category(self.owners, self.kv_tables)
        category = rng.choice(sorted(categories))
        return category, rng.choice(categories[category])

    def save(self) -> None:
        """Write the edited bytes back (the whole file, truncated to their length)."""
        with open(self.path, "wb") as f:
            f.write(self.data)
            f.flush()
            os.fsync(f.fileno())


def bitflip(image: FileImage, rng: random.Random) -> Applied:
    """Flip 1 to 8 random bits inside one page (the header's first 100 bytes count apart)."""
    category, page = image.pick_page(rng)
    start = image.offset(page)
    low, high = (0, 100) if category == "header" else (100 if page == 1 else 0, image.page)
    flips = []
    for _ in range(rng.randint(1, 8)):
        at = start + rng.randrange(low, high)
        bit = rng.randrange(8)
        image.data[at] ^= 1 << bit
        flips.append(f"{at}:{bit}")
    return Applied("bitflip", category, image.protected([page]), f"page {page}: bits {' '.join(flips)}")


def overwrite(image: FileImage, rng: random.Random) -> Applied:
    """Overwrite 1 to 64 bytes inside one page with random bytes, zeros or 0xFF."""
    category, page = image.pick_page(rng)
    length = rng.randint(1, 64)
    at = image.offset(page) + rng.randrange(0, image.page - length)
    fill = rng.choice(("random", "zeros", "ones"))
    if fill == "random":
        new = bytes(rng.randrange(256) for _ in range(length))
    else:
        new = (b"\x00" if fill == "zeros" else b"\xff") * length
    image.data[at : at + length] = new
    return Applied("overwrite", category, image.protected([page]), f"{length} {fill} bytes at {at}")


def truncate_at_page(image: FileImage, rng: random.Random) -> Applied:
    """Cut the file after a whole number of pages (at least one page kept)."""
    keep = rng.randint(1, max(1, image.pages - 1))
    del image.data[keep * image.page :]
    # SQLite's b-trees still name the pages cut off, so the damage is always visible to it.
    return Applied("truncate-page", "", True, f"kept {keep} of {image.pages} pages")


def truncate_mid_page(image: FileImage, rng: random.Random) -> Applied:
    """Cut the file inside a page (anywhere but the first 100 bytes)."""
    cut = rng.randrange(100, len(image.data))
    if cut % image.page == 0:
        cut += 1
    del image.data[cut:]
    return Applied("truncate-mid-page", "", True, f"cut at byte {cut}")


def zero_page(image: FileImage, rng: random.Random) -> Applied:
    """Fill one page with zeros (page 1 keeps its 100-byte header)."""
    category, page = image.pick_page(rng)
    start = image.offset(page) + (100 if page == 1 else 0)
    end = image.offset(page) + image.page
    image.data[start:end] = bytes(end - start)
    return Applied("zero-page", category, image.protected([page]), f"page {page}")


def swap_pages(image: FileImage, rng: random.Random) -> Applied:
    """Swap two pages, the second of the same kind as the first when there is another."""
    category, first = image.pick_page(rng)
    same = [p for p in pages_by_category(image.owners, image.kv_tables)[category] if p != first]
    others = same or [p for p in range(1, image.pages + 1) if p != first]
    if not others:
        return Applied("swap-pages", category, True, "one page only: nothing swapped")
    second = rng.choice(others)
    a, b = image.offset(first), image.offset(second)
    size = image.page
    image.data[a : a + size], image.data[b : b + size] = image.data[b : b + size], image.data[a : a + size]
    return Applied("swap-pages", category, image.protected([first, second]), f"pages {first} and {second}")


def header_field(image: FileImage, rng: random.Random) -> Applied:
    """Set one 4-byte header field to an extreme or random value."""
    at = rng.choice(_HEADER_FIELDS)
    value = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32), image.pages + 1))
    image.data[at : at + 4] = value.to_bytes(4, "big")
    return Applied("header-field", "", True, f"offset {at} = {value}")


def _set_pointer(image: FileImage, at: int, page: int) -> None:
    image.data[at : at + 4] = page.to_bytes(4, "big")


def overflow_cycle(image: FileImage, rng: random.Random) -> Applied:
    """Point an overflow page's next-page link at itself or at a page earlier in the file: the
    chain of a long row's bytes becomes a cycle (or jumps into another chain)."""
    pages = pages_of_type(image.path, "overflow")
    if not pages:
        return Applied("overflow-cycle", "", True, "no overflow page: nothing changed")
    page = rng.choice(pages)
    target = rng.choice((page, rng.choice(pages), 1))
    _set_pointer(image, image.offset(page), target)
    return Applied("overflow-cycle", "", True, f"overflow page {page} -> {target}")


def btree_cycle(image: FileImage, rng: random.Random) -> Applied:
    """Point an interior b-tree page's right-most child at itself or at page 1 (the schema):
    a descent that follows it loops or lands in another tree."""
    pages = pages_of_type(image.path, "internal")
    if not pages:
        return Applied("btree-cycle", "", True, "no interior page: nothing changed")
    page = rng.choice(pages)
    header = image.offset(page) + (100 if page == 1 else 0)
    target = rng.choice((page, 1, rng.choice(pages)))
    _set_pointer(image, header + 8, target)  # right-most child pointer of an interior page
    return Applied("btree-cycle", "", True, f"interior page {page} right child -> {target}")


def freelist_cycle(image: FileImage, rng: random.Random) -> Applied:
    """Make the free list loop: its first trunk page names itself as the next trunk (or, on a
    file without free pages, name page 1 as the free-list trunk)."""
    trunk = int.from_bytes(image.data[32:36], "big")
    if 0 < trunk <= image.pages:
        _set_pointer(image, image.offset(trunk), trunk)
        return Applied("freelist-cycle", "", True, f"trunk {trunk} -> {trunk}")
    _set_pointer(image, 32, 1)
    _set_pointer(image, 36, rng.randint(1, 1000))
    return Applied("freelist-cycle", "", True, "free-list trunk -> page 1")


#: Every byte mutation, by name.
BYTE_MUTATIONS: Dict[str, Callable[[FileImage, random.Random], Applied]] = {
    "bitflip": bitflip,
    "overwrite": overwrite,
    "truncate-page": truncate_at_page,
    "truncate-mid-page": truncate_mid_page,
    "zero-page": zero_page,
    "swap-pages": swap_pages,
    "header-field": header_field,
    "overflow-cycle": overflow_cycle,
    "btree-cycle": btree_cycle,
    "freelist-cycle": freelist_cycle,
}


def apply_byte_mutation(path: str, kv_tables: Sequence[str], name: str, rng: random.Random) -> Applied:
    """Apply the byte mutation ``name`` to the file at ``path`` in place."""
    image = FileImage(path, kv_tables)
    applied = BYTE_MUTATIONS[name](image, rng)
    image.save()
    return applied


def byte_mutation_names() -> List[str]:
    """Names of the byte mutations, in a fixed order (so a seed picks the same ones)."""
    return list(BYTE_MUTATIONS)
