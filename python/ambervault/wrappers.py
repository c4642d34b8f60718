"""Wrappers that choose how a value is encoded, overriding the automatic choice:
``vault[k] = Json({...})``. Reading the value gives back the plain object (the encoding is
kept beside the value), never the wrapper.

>>> import ambervault
>>> v = ambervault.KVault(":memory:")
>>> v["settings"] = ambervault.Json({"theme": "dark"})
>>> v["settings"], v.info("settings")["encoding"]
({'theme': 'dark'}, 'json')
"""

from __future__ import annotations

from typing import Any


class EncodingWrapper:
    """A value together with the encoding it must be stored with."""

    #: The encoding's name, as :meth:`KVault.info` reports it.
    encoding_name = ""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.data == self.data  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class MsgPack(EncodingWrapper):
    """Store as MessagePack (the automatic choice for Python values)."""

    __slots__ = ()
    encoding_name = "msgpack"


class Json(EncodingWrapper):
    """Store as UTF-8 JSON text (readable by any tool; tuples come back as lists, dict keys
    must be strings)."""

    __slots__ = ()
    encoding_name = "json"


class Cbor(EncodingWrapper):
    """Store as CBOR (RFC 8949), through the ``cbor2`` package (``pip install cbor2``)."""

    __slots__ = ()
    encoding_name = "cbor"


class Pickle(EncodingWrapper):
    """Store with Python's pickle. Reading it back runs code chosen by whoever wrote the
    file, so both storing and reading need the vault opened with ``allow_pickle=True``."""

    __slots__ = ()
    encoding_name = "pickle"
