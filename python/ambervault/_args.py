"""The argument checks Python must do itself. Keys and values are checked once, natively
(``raw_key_bytes`` and ``value_snapshot`` give Python the bytes where it needs them); what is
here are the arguments that never reach the native layer as they are (TTLs, limits)."""

from __future__ import annotations

from typing import Any, Optional

from ._ambervault import raw_key_bytes, value_snapshot
from ._file import check_int
from .exceptions import InvalidArgument

__all__ = ["check_int", "check_limit", "check_ttl", "raw_key_bytes", "value_snapshot"]


def check_ttl(ttl: Any) -> float:
    """A TTL in seconds: a positive number."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not ttl > 0:
        raise InvalidArgument(f"ttl must be positive, not {ttl}")
    return float(ttl)


def check_limit(limit: Optional[int]) -> Optional[int]:
    """A scan limit: None or an int >= 0."""
    if limit is None:
        return None
    check_int("limit", limit)
    if limit < 0:
        raise InvalidArgument(f"limit must be >= 0, not {limit}")
    return limit
