"""JSON documents: read and change one place inside a dict or list value by a path (mixed into
:class:`~ambervault.KVault`).

Paths are a subset of JSONPath naming one place: ``$`` (the whole value), ``.name`` (a member of a
dict), ``["any name"]`` / ``['any name']`` (a member whose name has other characters; the
double-quoted form is a JSON string, escapes included), ``[3]`` / ``[-1]`` (an item of a list,
negative from the end). Wildcards, recursive descent, slices and filters are refused. See
``docs/events.md`` for the rules of each operation.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable, List, Optional, Tuple, Union

from .exceptions import Conflict, InvalidArgument, NotFound
from .wrappers import Cbor, Json

Step = Union[str, int]

_ABSENT: Any = object()
_NAME = re.compile(r"[^.\[\]'\"\s*]+")
_INDEX = re.compile(r"-?(0|[1-9][0-9]*)")


def _bad(path: str, at: int, why: str) -> InvalidArgument:
    return InvalidArgument(f"malformed path {path!r} at character {at}: {why}")


@functools.lru_cache(maxsize=1024)
def _parse(path: str) -> Tuple[Step, ...]:
    if not path.startswith("$"):
        raise _bad(path, 0, "a path starts with '$'")
    steps: List[Step] = []
    i, n = 1, len(path)
    while i < n:
        c = path[i]
        if c == ".":
            if path.startswith("..", i):
                raise _bad(path, i, "recursive descent ('..') is not supported")
            m = _NAME.match(path, i + 1)
            if m is None:
                if i + 1 < n and path[i + 1] == "*":
                    raise _bad(path, i + 1, "wildcards are not supported")
                raise _bad(path, i + 1, "expected a member name after '.' (use [\"...\"] for other names)")
            steps.append(m.group())
            i = m.end()
        elif c == "[":
            if i + 1 >= n:
                raise _bad(path, i, "unclosed '['")
            q = path[i + 1]
            if q in "\"'":
                name, i = _quoted(path, i + 1)
                steps.append(name)
            else:
                m = _INDEX.match(path, i + 1)
                if m is None or path[m.end() : m.end() + 1] not in ("]", ""):
                    what = path[i + 1 : path.find("]", i) if "]" in path[i:] else n]
                    if what == "*":
                        raise _bad(path, i + 1, "wildcards are not supported")
                    if ":" in what:
                        raise _bad(path, i + 1, "slices are not supported")
                    if what.startswith("?"):
                        raise _bad(path, i + 1, "filters are not supported")
                    raise _bad(path, i + 1, "expected an integer index or a quoted name inside [...]")
                steps.append(int(m.group()))
                i = m.end()
            if path[i : i + 1] != "]":
                raise _bad(path, i, "expected ']'")
            i += 1
        else:
            raise _bad(path, i, f'unexpected {c!r} (steps are .name, ["name"] or [index])')
    return tuple(steps)


def _quoted(path: str, i: int) -> Tuple[str, int]:
    """The name quoted at ``path[i]`` and the index after its closing quote."""
    q = path[i]
    j = i + 1
    while j < len(path):
        if path[j] == "\\":
            j += 2
            continue
        if path[j] == q:
            break
        j += 1
    else:
        raise _bad(path, i, "unterminated quoted name")
    body = path[i + 1 : j]
    if q == '"':
        try:
            name = json.loads(path[i : j + 1])
        except ValueError as e:
            raise _bad(path, i, f"bad JSON string ({e})") from None
    else:
        name = re.sub(r"\\(.)", r"\1", body, flags=re.S)
    return name, j + 1


def parse_path(path: Any) -> Tuple[Step, ...]:
    """The steps of ``path``: member names (``str``) and list indexes (``int``).

    >>> parse_path('$.a["b c"][-1]')
    ('a', 'b c', -1)
    """
    if not isinstance(path, str):
        raise TypeError(f"paths must be str, not {type(path).__name__}")
    return _parse(path)


def _render(steps: Tuple[Step, ...]) -> str:
    out = "$"
    for s in steps:
        if isinstance(s, int):
            out += f"[{s}]"
        elif _NAME.fullmatch(s):
            out += "." + s
        else:
            out += "[" + json.dumps(s, ensure_ascii=False) + "]"
    return out


def _kind(node: Any) -> str:
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, (list, tuple)):
        return "a list"
    name = type(node).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _container(node: Any, step: Step, steps: Tuple[Step, ...], depth: int) -> None:
    """Refuse a step that does not fit the node it goes into (``TypeError``)."""
    if isinstance(step, str):
        if not isinstance(node, dict):
            raise TypeError(
                f"{_render(steps[:depth])} is {_kind(node)}, not an object: it has no member {step!r}"
            )
    elif not isinstance(node, (list, tuple)):
        raise TypeError(f"{_render(steps[:depth])} is {_kind(node)}, not a list: it has no item [{step}]")


def _walk(doc: Any, steps: Tuple[Step, ...]) -> Any:
    node = doc
    for depth, step in enumerate(steps):
        _container(node, step, steps, depth)
        if isinstance(step, str):
            node = node.get(step, _ABSENT)
        else:
            i = step + len(node) if step < 0 else step
            node = node[i] if 0 <= i < len(node) else _ABSENT
        if node is _ABSENT:
            return _ABSENT, depth + 1
    return node, len(steps)


def _set(node: Any, steps: Tuple[Step, ...], depth: int, value: Any) -> Any:
    """``node`` with ``value`` at ``steps[depth:]``; missing levels are created (an object for a
    member step, a list for an index step, which must then be ``[0]``)."""
    if depth == len(steps):
        return value
    step = steps[depth]
    if node is _ABSENT:
        node = {} if isinstance(step, str) else []
    _container(node, step, steps, depth)
    if isinstance(step, str):
        node[step] = _set(node.get(step, _ABSENT), steps, depth + 1, value)
        return node
    n = len(node)
    i = step + n if step < 0 else step
    if i == n and step >= 0:
        child = _ABSENT  # [len] appends
    elif 0 <= i < n:
        child = node[i]
    else:
        raise NotFound(
            f"{_render(steps[: depth + 1])}: index out of range ({_render(steps[:depth])} has "
            f"{n} items; [{n}] appends)"
        )
    new = _set(child, steps, depth + 1, value)
    if isinstance(node, tuple):
        return (*node[:i], new, *node[i + 1 :])
    if i == n:
        node.append(new)
    else:
        node[i] = new
    return node


def _delete(node: Any, steps: Tuple[Step, ...], depth: int) -> Any:
    step = steps[depth]
    _container(node, step, steps, depth)
    last = depth == len(steps) - 1
    if isinstance(step, str):
        if step not in node:
            raise NotFound(f"{_render(steps[: depth + 1])}: no such member")
        if last:
            del node[step]
        else:
            node[step] = _delete(node[step], steps, depth + 1)
        return node
    n = len(node)
    i = step + n if step < 0 else step
    if not 0 <= i < n:
        raise NotFound(f"{_render(steps[: depth + 1])}: index out of range ({n} items)")
    if isinstance(node, tuple):
        rest = () if last else (_delete(node[i], steps, depth + 1),)
        return (*node[:i], *rest, *node[i + 1 :])
    if last:
        del node[i]
    else:
        node[i] = _delete(node[i], steps, depth + 1)
    return node


class JsonDocsMixin:
    """``json_get``, ``json_set`` and ``json_delete`` of a KVault."""

    def json_get(self, key: Any, path: str = "$", default: Any = _ABSENT) -> Any:
        """The part of the value of ``key`` at ``path``. A missing key, member or index raises
        :class:`~ambervault.NotFound` (a ``KeyError``) naming the first missing step, or returns
        ``default`` when given; stepping into a value that is not a container of the right
        kind (``.name`` into a list, ``[0]`` into a str) is a ``TypeError``.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v["doc"] = {"a": {"b": [10, 20]}}
        >>> v.json_get("doc", "$.a.b[-1]"), v.json_get("doc", "$.a.x", default=None)
        (20, None)
        """
        steps = parse_path(path)
        kv: Any = self
        doc = kv.get(key, _ABSENT)
        if doc is _ABSENT:
            if default is not _ABSENT:
                return default
            raise NotFound(key)
        found, depth = _walk(doc, steps)
        if found is _ABSENT:
            if default is not _ABSENT:
                return default
            raise NotFound(f"{_render(steps[:depth])} not found in the value of {key!r}")
        return found

    def json_set(self, key: Any, path: str, value: Any) -> int:
        """Put ``value`` at ``path`` inside the value of ``key``, in one transaction; returns the
        key's new version. Missing objects along the path are created (a missing key becomes a
        new document); list indexes must exist, except ``[n]`` on a list of ``n`` items, which
        appends. ``$`` replaces the whole value. The document keeps its encoding (``Json``,
        ``Cbor`` or MessagePack) and its expiry.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v.json_set("doc", "$.user.name", "ada")
        1
        >>> v.json_set("doc", "$.user.tags", []), v.json_set("doc", "$.user.tags[0]", "x")
        (2, 3)
        >>> v["doc"]
        {'user': {'name': 'ada', 'tags': ['x']}}
        """
        steps = parse_path(path)
        return self._json_change(key, lambda doc: _set(doc, steps, 0, value), creates=True)

    def json_delete(self, key: Any, path: str) -> Optional[int]:
        """Remove the member or item at ``path`` from the value of ``key``, in one transaction;
        returns the key's new version. ``$`` deletes the key itself (and returns ``None``). A
        missing key, member or index raises :class:`~ambervault.NotFound`.

        >>> from ambervault import KVault
        >>> v = KVault(":memory:"); v["doc"] = {"a": 1, "b": [1, 2]}
        >>> v.json_delete("doc", "$.b[0]"), v["doc"]
        (2, {'a': 1, 'b': [2]})
        """
        steps = parse_path(path)
        kv: Any = self
        if not steps:
            if not kv.delete(key):
                raise NotFound(key)
            return None
        return self._json_change(key, lambda doc: _delete(doc, steps, 0), creates=False)

    def _json_change(self, key: Any, change: Callable[[Any], Any], creates: bool) -> int:
        """Read the value, change it, write it back if its version is still the one read."""
        kv: Any = self
        while True:
            try:
                with kv._atomic():
                    return self._json_write(kv, key, change, creates)
            except Conflict:
                continue  # outside a transaction (lock_cache), another writer came first

    @staticmethod
    def _json_write(kv: Any, key: Any, change: Callable[[Any], Any], creates: bool) -> int:
        meta = kv.info(key)
        doc = _ABSENT if meta is None else kv.get(key, _ABSENT)
        if doc is _ABSENT:
            if not creates:
                raise NotFound(key)
            meta = None
        new = change(doc)
        encoding = None if meta is None else meta["encoding"]
        wrapped = Json(new) if encoding == "json" else Cbor(new) if encoding == "cbor" else new
        kv._native  # noqa: B018 - raises ClosedError, or pushes the injected clock
        data, code = kv._codec.encode(wrapped)
        if meta is None:
            kv._backend.put(key, data, kv._expiry(None), None, True, code)
            return 1
        kv._backend.put(key, data, meta["expires_at_ms"], meta["version"], False, code)
        return int(meta["version"]) + 1
