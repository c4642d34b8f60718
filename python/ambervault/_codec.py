"""Typed values: how a Python value becomes bytes plus an encoding code, and back.

The code is stored beside the value (the key row's ``encoding`` column), never inside it, so
raw bytes are never misread as a packed value. The codes are part of the file format
(``docs/format.md``):

====  ============  ==========================================================================
code  name          bytes
====  ============  ==========================================================================
0     raw           the bytes as given (``bytes``, ``bytearray``, ``memoryview``)
1     msgpack       MessagePack, with the extension types below
2     json          UTF-8 JSON text (the ``Json`` wrapper)
3     cbor          CBOR (the ``Cbor`` wrapper; needs the ``cbor2`` package)
4     pickle        a pickle (only with ``allow_pickle=True``, to write and to read)
5     numpy         a ``.npy`` image: numpy's own header (dtype, byte order, shape) and data
6     numpy-scalar  a ``.npy`` image of a 0-d array, read back as a numpy scalar
====  ============  ==========================================================================

MessagePack extension types: 1 a tuple (its items as a MessagePack array), 2 an int beyond
64 bits (decimal text), 3 a ``datetime`` and 4 a ``date`` (ISO 8601 text, with the UTC offset
when there is one), 5 a numpy array inside a container (its ``.npy`` image, as code 5).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
from typing import Any, Callable, Dict, NoReturn, Tuple

import msgpack

from .exceptions import CorruptionError, InvalidArgument, VaultError
from .wrappers import Cbor, EncodingWrapper, Json, MsgPack, Pickle

RAW, MSGPACK, JSON, CBOR, PICKLE, NUMPY, NUMPY_SCALAR = range(7)

#: Encoding names by code, as :meth:`KVault.info` reports them.
NAMES: Dict[int, str] = {
    RAW: "raw",
    MSGPACK: "msgpack",
    JSON: "json",
    CBOR: "cbor",
    PICKLE: "pickle",
    NUMPY: "numpy",
    NUMPY_SCALAR: "numpy-scalar",
}

_EXT_TUPLE, _EXT_BIGINT, _EXT_DATETIME, _EXT_DATE, _EXT_NUMPY = 1, 2, 3, 4, 5

_BYTES_LIKE = (bytes, bytearray, memoryview)


class PickleNotAllowed(VaultError, TypeError):
    """A pickled value was met in a vault not opened with ``allow_pickle=True``."""


def _pack_default(value: Any) -> Any:
    """What MessagePack cannot pack as it is: tuples, dates, numpy arrays (inside a dict or
    list, e.g. an embedding beside its fields), and subclasses of the built-in types
    (``strict_types`` sends them here), which are stored as their base type."""
    numpy = _numpy_module(value)
    if numpy is not None and isinstance(value, numpy.ndarray):
        return msgpack.ExtType(_EXT_NUMPY, _npy_bytes(numpy, value))
    if isinstance(value, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _packb(list(value)))
    if isinstance(value, _dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, _dt.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    for base in (bool, int, float, str, bytes, list, dict):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def _big_ints(value: Any) -> Any:
    """``value`` with every int beyond 64 bits made an extension (MessagePack stops at 64
    bits). Only called after the packer refused a value, so plain values never pay for it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        return msgpack.ExtType(_EXT_BIGINT, str(int(value)).encode())
    if isinstance(value, list):
        return [_big_ints(v) for v in value]
    if isinstance(value, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _packb([_big_ints(v) for v in value]))
    if isinstance(value, dict):
        return {_big_ints(k): _big_ints(v) for k, v in value.items()}
    return value


def _packer() -> msgpack.Packer:
    # A fresh packer per call (tuples pack recursively, so one cannot be shared) with a small
    # first buffer: msgpack.packb's default of 256 KiB made glibc grow and trim the heap on
    # every call (three brk calls per small value, most of a memoized call's time).
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_pack_default, buf_size=256)


def _packb(value: Any) -> bytes:
    try:
        return _packer().pack(value)
    except OverflowError:
        return _packer().pack(_big_ints(value))


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_unpackb(data))
    if code == _EXT_BIGINT:
        return int(data.decode("ascii"))
    if code == _EXT_DATETIME:
        return _dt.datetime.fromisoformat(data.decode("ascii"))
    if code == _EXT_DATE:
        return _dt.date.fromisoformat(data.decode("ascii"))
    if code == _EXT_NUMPY:
        return _npy_array(data)
    return msgpack.ExtType(code, data)


def _damaged(what: str, error: Exception) -> NoReturn:
    """Raise :class:`CorruptionError` for stored bytes that are not a valid ``what`` value.

    Why: the decoders' own errors (msgpack's ``ExtraData``, ``JSONDecodeError``, numpy's header
    errors, a ``TypeError`` from a tuple extension holding an int, ...) would otherwise reach the
    caller as unrelated built-in exceptions. Running out of memory and a missing optional
    package are not damage, and an error already of ours keeps its class."""
    if isinstance(error, (MemoryError, ImportError, VaultError)):
        raise error
    raise CorruptionError(f"stored {what} value is damaged: {type(error).__name__}: {error}") from error


def _unpackb(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    except Exception as e:
        _damaged("MessagePack", e)


def _json_dumps(value: Any) -> bytes:
    """UTF-8 JSON text of ``value`` (non-ASCII kept as is; NaN and infinities as JavaScript
    writes them, which ``json.loads`` reads back)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")


def _json_loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except Exception as e:
        _damaged("JSON", e)


def _cbor_dumps(value: Any) -> bytes:
    """CBOR of ``value``. cbor2's encode errors are not ``TypeError``/``ValueError`` in every
    version, so they are turned into those: callers promise one of the two for a value that
    cannot be stored."""
    cbor2 = _cbor2()
    try:
        return cbor2.dumps(value)
    except (TypeError, ValueError):
        raise
    except getattr(cbor2, "CBOREncodeValueError", ()) as e:  # e.g. a cyclic value
        raise ValueError(str(e)) from None
    except cbor2.CBOREncodeError as e:  # a type cbor2 cannot encode
        raise TypeError(str(e)) from None


def _cbor_loads(data: bytes) -> Any:
    cbor2 = _cbor2()
    try:
        return cbor2.loads(data)
    except Exception as e:
        _damaged("CBOR", e)


def _numpy_module(value: Any) -> Any:
    """numpy, if ``value`` is a numpy array or scalar (numpy is imported only then)."""
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        import numpy

        if isinstance(value, (numpy.ndarray, numpy.generic)):
            return numpy
    return None


def _npy_bytes(numpy: Any, array: Any) -> bytes:
    if array.dtype.hasobject:
        raise TypeError(
            "numpy arrays of dtype object cannot be stored as arrays (their items are Python "
            "objects); store array.tolist() or use a numeric dtype"
        )
    out = io.BytesIO()
    numpy.lib.format.write_array(out, array, allow_pickle=False)
    return out.getvalue()


def _npy_array(data: bytes) -> Any:
    import numpy

    npy = numpy.lib.format
    try:
        stream = io.BytesIO(data)
        major, _ = npy.read_magic(stream)
        # Format 3.0 differs from 2.0 only in the header text's encoding (UTF-8 field names),
        # which does not change the sizes read here.
        read_header = npy.read_array_header_1_0 if major == 1 else npy.read_array_header_2_0
        shape, _, dtype = read_header(stream)
        # Why: numpy allocates the whole array from the header's shape before reading the
        # data, so a damaged header could ask for terabytes. Its size must be what is stored.
        stored = len(data) - stream.tell()
        needed = dtype.itemsize * math.prod(shape)
        if dtype.hasobject or stored != needed:
            raise ValueError(f"header describes {needed} bytes of {dtype}, {stored} are stored")
        return npy.read_array(io.BytesIO(data), allow_pickle=False)
    except Exception as e:
        _damaged("numpy", e)


def _cbor2() -> Any:
    try:
        import cbor2
    except ImportError as e:
        raise ImportError("CBOR values need the cbor2 package: pip install cbor2") from e
    return cbor2


class ValueCodec:
    """Encodes values for one vault, with its switches (auto-pack, pickle)."""

    def __init__(self, auto_pack: bool = True, allow_pickle: bool = False) -> None:
        self.auto_pack = bool(auto_pack)
        self.allow_pickle = bool(allow_pickle)

    def encode(self, value: Any) -> Tuple[Any, int]:
        """``(bytes-like, code)`` for ``value``; ``TypeError``/``ValueError`` for a value
        that cannot be stored (nothing is written then)."""
        if isinstance(value, _BYTES_LIKE):
            return value, RAW
        if isinstance(value, EncodingWrapper):
            return self._encode_wrapped(value)
        if not self.auto_pack:
            raise TypeError(
                f"values must be bytes-like while auto-pack is off, not {type(value).__name__} "
                "(enable_auto_pack() stores Python values)"
            )
        numpy = _numpy_module(value)
        if numpy is not None:
            if isinstance(value, numpy.ndarray):
                return _npy_bytes(numpy, value), NUMPY
            return _npy_bytes(numpy, numpy.asarray(value)), NUMPY_SCALAR
        if not isinstance(value, (str, int, float, list, tuple, dict)):
            try:
                memoryview(value)
            except TypeError:
                pass
            else:
                # Any other buffer (array.array, mmap, ...) is stored as its raw bytes.
                return value, RAW
        try:
            return _packb(value), MSGPACK
        except TypeError as e:
            raise TypeError(
                f"{e}: store bytes, str, int, float, bool, None, list, tuple, dict, date, "
                "datetime or numpy arrays, or wrap it in ambervault.Pickle(...) and open the "
                "vault with allow_pickle=True"
            ) from None
        except (ValueError, RecursionError) as e:
            # The packer's (or Python's) recursion limit: a cyclic or absurdly deep value.
            raise ValueError(f"cannot store this value: {e} (is it cyclic or nested too deep?)") from None

    def _encode_wrapped(self, wrapped: EncodingWrapper) -> Tuple[bytes, int]:
        data = wrapped.data
        if isinstance(wrapped, MsgPack):
            return _packb(data), MSGPACK
        if isinstance(wrapped, Json):
            return _json_dumps(data), JSON
        if isinstance(wrapped, Cbor):
            return _cbor_dumps(data), CBOR
        if isinstance(wrapped, Pickle):
            if not self.allow_pickle:
                raise PickleNotAllowed(
                    "storing a pickle needs the vault opened with allow_pickle=True (reading one "
                    "back runs code chosen by whoever wrote the file)"
                )
            import pickle

            return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL), PICKLE
        raise TypeError(f"unknown encoding wrapper {type(wrapped).__name__}")

    def decode(self, code: int, data: bytes) -> Any:
        """The value stored as ``data`` with encoding ``code``."""
        decode = _DECODERS.get(code)
        if decode is not None:
            return decode(data)
        if code == PICKLE:
            if not self.allow_pickle:
                raise PickleNotAllowed(
                    "this value is a pickle; reading it runs code chosen by whoever wrote the "
                    "file, so open the vault with allow_pickle=True to read it"
                )
            import pickle

            return pickle.loads(data)
        raise InvalidArgument(
            f"value has encoding {code}, which this version of ambervault does not know "
            "(written by a newer version?)"
        )


_DECODERS: Dict[int, Callable[[bytes], Any]] = {
    RAW: bytes,
    MSGPACK: _unpackb,
    JSON: _json_loads,
    CBOR: _cbor_loads,
    NUMPY: _npy_array,
    NUMPY_SCALAR: lambda data: _npy_array(data)[()],
}
