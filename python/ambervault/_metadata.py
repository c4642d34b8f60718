"""Metadata beside items (vectors, texts): a dict stored as JSON, and ``where=`` filters on it,
shared by :class:`~ambervault.VectorKVault` and :class:`~ambervault.TextVault`."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple


def metadata_json(metadata: Any) -> Optional[str]:
    """Metadata (a dict, or None) as compact JSON text; ``TypeError`` for anything else or for
    values JSON cannot hold (NaN, non-str keys, objects)."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        return json.dumps(metadata, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata must be JSON-serializable (str keys, finite numbers): {e}") from None


def filter_clauses(where: Optional[Dict[str, Any]]) -> Optional[List[Tuple[str, List[Any]]]]:
    """``where={field: value or [values]}`` as the native filter clauses: a document matches
    when every field equals its value (or one of its values)."""
    if where is None:
        return None
    if not isinstance(where, dict):
        raise TypeError(f"where must be a dict of field -> value(s), not {type(where).__name__}")
    clauses = []
    for field, accepted in where.items():
        if not isinstance(field, str):
            raise TypeError(f"where fields must be str, not {type(field).__name__}")
        if isinstance(accepted, (list, tuple, set, frozenset)):
            values = list(accepted)
        else:
            values = [accepted]
        clauses.append((field, values))
    return clauses
