"""Hybrid search: one ranking from a word search and a vector search over the same items,
fused by reciprocal rank fusion (RRF).

RRF scores an item by its ranks, not by the two searches' scores (BM25 and distances are not
comparable): ``score = sum(weight / (rrf_k + rank))`` over the lists the item appears in, rank
1 being the best. An item ranked well by both searches rises above one ranked first by only
one of them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional

from ._file import check_int
from .exceptions import InvalidArgument

if TYPE_CHECKING:
    from .text import TextVault
    from .vectors import VectorKVault, VectorLike


class HybridHit(NamedTuple):
    """One fused result."""

    #: The item's identity: its id (or, for a vector stored with a key, its key), or the
    #: value of the metadata field named by ``key=``.
    id: Any
    #: The fused RRF score (higher is better).
    score: float
    #: The text vault's value when the text search found the item, else the vector vault's.
    value: Any
    #: Rank in the text search (1 = best), or None when it did not find the item.
    text_rank: Optional[int]
    #: Rank in the vector search, or None.
    vector_rank: Optional[int]


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{name} must be a finite number >= 0, not {value}")
    return float(value)


def hybrid_search(
    text_vault: TextVault,
    vector_vault: VectorKVault,
    text: str,
    vector: VectorLike,
    k: int = 10,
    *,
    rrf_k: float = 60,
    candidates: Optional[int] = None,
    text_weight: float = 1.0,
    vector_weight: float = 1.0,
    key: Optional[str] = None,
    where: Optional[Dict[str, Any]] = None,
    mode: str = "all",
    column: Optional[str] = None,
    exact: bool = False,
) -> List[HybridHit]:
    """The ``k`` best items for a text query and a query vector together, fused by reciprocal
    rank fusion.

    The text vault's ``search(text)`` and the vector vault's ``search(vector)`` each rank
    ``candidates`` items (default ``max(50, 4 * k)``); an item's fused score is
    ``text_weight / (rrf_k + text_rank) + vector_weight / (rrf_k + vector_rank)``, with a term
    only for the lists it appears in. Ties keep the better single rank first, then the text
    search's order.

    Items are matched across the two vaults by identity: by default a text document's id and
    a vector item's id (or its key, for items stored with :meth:`VectorKVault.upsert`), so
    insert them in step (same ids) or give ``key="field"`` to match by a metadata field both
    sides carry (items without it are left out).

    :param where: a metadata filter applied to both searches.
    :param mode: and :param column: as in :meth:`TextVault.search` (plain words).
    :param exact: exact vector search (skip the HNSW graph).

    >>> from ambervault import TextVault, VectorKVault, hybrid_search
    >>> tv = TextVault(":memory:")
    >>> vk = VectorKVault(tv, dimensions=2, metric="l2")
    >>> docs = [("red apple", [0, 1]), ("green apple tree", [5, 5]), ("red car", [0, 0])]
    >>> for i, (words, vec) in enumerate(docs):
    ...     _ = tv.insert(words, i, {"doc": i})
    ...     _ = vk.insert(vec, i, {"doc": i})
    >>> hits = hybrid_search(tv, vk, "apple", [0, 0], k=3, key="doc")
    >>> [(hit.id, hit.text_rank, hit.vector_rank) for hit in hits]
    [(0, 1, 2), (1, 2, 3), (2, None, 1)]
    """
    check_int("k", k)
    if k < 0:
        raise InvalidArgument(f"k must be >= 0, not {k}")
    smoothing = _weight("rrf_k", rrf_k)
    weights = (_weight("text_weight", text_weight), _weight("vector_weight", vector_weight))
    if candidates is None:
        candidates = max(50, 4 * k)
    check_int("candidates", candidates)
    if candidates < k:
        raise InvalidArgument(f"candidates must be >= k ({k}), not {candidates}")
    if key is not None and not isinstance(key, str):
        raise TypeError(f"key must be a metadata field name (str), not {type(key).__name__}")
    with_metadata = key is not None
    text_hits = text_vault.search(
        text, k=candidates, column=column, mode=mode, where=where, with_metadata=with_metadata
    )
    vector_hits = vector_vault.search(
        vector, k=candidates, where=where, exact=exact, with_metadata=with_metadata
    )
    fused: Dict[Any, List[Any]] = {}  # identity -> [score, value, text rank, vector rank, order]
    for side, hits in enumerate((text_hits, vector_hits)):
        rank = 0
        for hit in hits:
            if key is None:
                identity = hit[0]
            else:
                meta = hit[3]
                if not isinstance(meta, dict) or meta.get(key) is None:
                    continue
                identity = meta[key]
            rank += 1
            entry = fused.get(identity)
            if entry is None:
                entry = fused[identity] = [0.0, hit[2], None, None, len(fused)]
            if entry[2 + side] is not None:
                continue  # the same identity twice in one list: its best rank counts
            entry[0] += weights[side] / (smoothing + rank)
            entry[2 + side] = rank
    ordered = sorted(
        fused.items(),
        key=lambda item: (-item[1][0], min(r for r in item[1][2:4] if r is not None), item[1][4]),
    )
    return [HybridHit(identity, score, value, t, v) for identity, (score, value, t, v, _) in ordered[:k]]


__all__ = ["HybridHit", "hybrid_search"]
