"""``KVault.memoize``: function results cached in a vault, keyed by the function's qualified
name and its arguments in the typed-value encoding (never pickled)."""

from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional, Tuple

from ._codec import ValueCodec
from .exceptions import Conflict, InvalidArgument

# First element of every memoized key, so results never collide with the application's keys.
KEY_PREFIX = "ambervault.memoize"
_MISSING: Any = object()
_ARGS_CODEC = ValueCodec(auto_pack=True, allow_pickle=False)


class Memoized:
    """A memoized function: call it like the original; ``cache_key(*args, **kwargs)`` gives the
    vault key a call uses and ``__wrapped__`` the original function."""

    def __init__(
        self,
        vault: Any,
        func: Callable[..., Any],
        ttl: Optional[float],
        typed: bool,
        ignore: Tuple[Any, ...],
    ) -> None:
        self._vault = vault
        self._ttl = ttl
        self._typed = typed
        self._ignore_positions = frozenset(i for i in ignore if isinstance(i, int))
        self._ignore_names = frozenset(i for i in ignore if isinstance(i, str))
        self.__wrapped__ = func
        self._name = f"{func.__module__}.{func.__qualname__}"
        functools.update_wrapper(self, func)

    def cache_key(self, *args: Any, **kwargs: Any) -> Tuple[str, str, bytes]:
        """The vault key of a call with these arguments (``TypeError`` when an argument has no
        typed-value encoding)."""
        kept_args = [a for i, a in enumerate(args) if i not in self._ignore_positions]
        kept_kwargs = sorted((k, v) for k, v in kwargs.items() if k not in self._ignore_names)
        # Lists, not tuples: a tuple packs as a nested extension (one more packer per level).
        parts: List[Any] = [list(kept_args), [[k, v] for k, v in kept_kwargs]]
        if self._typed:
            types = [type(a).__qualname__ for a in kept_args]
            types += [type(v).__qualname__ for _, v in kept_kwargs]
            parts.append(types)
        try:
            data, code = _ARGS_CODEC.encode(parts)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"cannot memoize {self._name}: its arguments have no typed-value encoding ({exc})"
            ) from None
        return (KEY_PREFIX, self._name, bytes([code]) + bytes(data))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = self.cache_key(*args, **kwargs)
        found = self._vault.get(key, _MISSING)
        if found is not _MISSING:
            return found
        result = self.__wrapped__(*args, **kwargs)
        try:
            # Only the first result is stored: a concurrent first call elsewhere that finished
            # earlier wins, and this call returns its own (equal) result.
            self._vault.put(key, result, ttl=self._ttl, if_absent=True)
        except Conflict:
            pass
        return result

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        # Decorating a method: bind like a function does.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)

    def __repr__(self) -> str:
        return f"<memoized {self._name}>"


def memoize_decorator(
    vault: Any, ttl: Optional[float], typed: bool, ignore: Tuple[Any, ...]
) -> Callable[[Callable[..., Any]], Memoized]:
    """The decorator returned by ``KVault.memoize`` (arguments already checked)."""
    if not isinstance(ignore, (tuple, list, set, frozenset)):
        raise TypeError("ignore must be a tuple of argument positions and names")
    for item in ignore:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise InvalidArgument(f"ignore holds argument positions (int) and names (str), not {item!r}")

    def decorate(func: Callable[..., Any]) -> Memoized:
        if not callable(func):
            raise TypeError(f"memoize decorates functions, not {type(func).__name__}")
        return Memoized(vault, func, ttl, typed, tuple(ignore))

    return decorate


__all__ = ["KEY_PREFIX", "Memoized", "memoize_decorator"]
