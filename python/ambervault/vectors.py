"""VectorKVault: embeddings with values and metadata in the vault file, searched by similarity.

Exact search (SIMD kernels, both cores) or an HNSW graph stored in the same file; metadata
filters; typed values as in :class:`~ambervault.KVault`. Compatible with kohakuvault 1.1.0's
``VectorKVault``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._ambervault import VectorTableCore
from ._codec import ValueCodec
from ._file import KeyArg, VaultFile, check_int, fspath, on_file
from ._metadata import filter_clauses as _filter_clauses
from ._metadata import metadata_json as _metadata_json
from ._value_switches import ValueSwitches
from .cache import BatchingCache
from .exceptions import ClosedError, InvalidArgument, NotFound
from .transaction import Transaction

Key = Union[str, bytes, Tuple[Any, ...]]
VectorLike = Union[np.ndarray, Sequence[float], bytes]

# The numpy dtype of each stored vector type, and the name kohakuvault's info() reports.
_DTYPES = {"f32": np.dtype("<f4"), "f16": np.dtype("<f2"), "i8": np.dtype("i1"), "bit": np.dtype("u1")}
_INFO_NAMES = {"f32": "float32", "f16": "float16", "i8": "int8", "bit": "bit"}
_LIST_BATCH = 1024


class VectorKVault(ValueSwitches):
    """A collection of vectors, each with a value (any typed value, as in :class:`KVault`), an
    optional key and optional metadata, searched by distance.

    :param path_or_vault: a path (or ``":memory:"``), or a :class:`KVault` / :class:`ColumnVault`
        whose file (and connection and transactions) the collection then shares.
    :param table: the collection's name.
    :param dimensions: vector length (default 768 for a new collection; an existing one keeps its
        own, and a different explicit value is an error).
    :param metric: ``"cosine"`` (default), ``"l2"``, ``"dot"`` (``1 - a·b``), or ``"hamming"``
        for bit vectors.
    :param vector_type: ``"f32"`` (default), ``"f16"``, ``"i8"`` or ``"bit"``.
    :param index: ``"auto"`` (exact below 20,000 items, HNSW from there), ``"flat"`` (always
        exact) or ``"hnsw"``.
    :param checkpoints: ``"auto"`` or ``"external"`` for a path (see :class:`KVault`).
    :param key: the key of an encrypted file, for a path (see :class:`KVault`).
    :param M: HNSW edges per node; :param ef_construction: and :param ef_search: its candidate
        list sizes while building and searching.

    >>> vk = VectorKVault(":memory:", dimensions=3, metric="l2")
    >>> a = vk.insert([1.0, 0.0, 0.0], {"name": "a"})
    >>> b = vk.insert([0.0, 1.0, 0.0], "b")
    >>> vk.search([0.9, 0.1, 0.0], k=1)[0][2]
    {'name': 'a'}
    """

    def __init__(
        self,
        path_or_vault: Any,
        table: str = "vec_kvault",
        dimensions: Optional[int] = None,
        metric: Optional[str] = None,
        vector_type: Optional[str] = None,
        *,
        read_only: bool = False,
        index: Optional[str] = None,
        M: Optional[int] = None,
        ef_construction: Optional[int] = None,
        ef_search: Optional[int] = None,
        auto_pack: bool = True,
        allow_pickle: bool = False,
        checkpoints: str = "auto",
        key: KeyArg = None,
    ) -> None:
        self._core: Optional[VectorTableCore] = None
        if not isinstance(table, str):
            raise TypeError(f"table must be a str, not {type(table).__name__}")
        for name, value in (
            ("dimensions", dimensions),
            ("M", M),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
        ):
            if value is not None:
                check_int(name, value)
        for name, text in (("metric", metric), ("vector_type", vector_type), ("index", index)):
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{name} must be a str, not {type(text).__name__}")
        self._codec = ValueCodec(auto_pack, allow_pickle)
        self._headers = True
        file = getattr(path_or_vault, "_file", None)
        if isinstance(file, VaultFile):
            self._file = file
            self._owns_file = False
        else:
            path = fspath(path_or_vault, "VectorKVault takes a path, a KVault or a ColumnVault")
            self._file = VaultFile(path, read_only=read_only, checkpoints=checkpoints, key=key)
            self._owns_file = True
        try:
            self._core = VectorTableCore(
                self._file.native,
                table,
                dimensions,
                vector_type,
                metric,
                index,
                M,
                ef_construction,
                ef_search,
            )
        except BaseException:
            if self._owns_file:
                self._file.close()
            raise
        spec = self._core.spec
        self.path = self._file.path
        self.table = table
        self.dimensions: int = spec[0]
        self.vector_type: str = spec[1]
        self.metric: str = spec[2]
        self._dtype = _DTYPES[self.vector_type]
        self._file.attach(self)

    # -- file ------------------------------------------------------------------------------------
    def _caches(self) -> List[BatchingCache]:
        return []

    def _stop_caches(self) -> None:
        pass

    @property
    def _native(self) -> VectorTableCore:
        core = self._core
        if core is None or self._file.closed:
            raise ClosedError("VectorKVault is closed")
        return core

    def close(self) -> None:
        """Stores the HNSW graph if it changed much since last stored, then releases the
        collection (and the file, if this object opened it). Idempotent."""
        core = self._core
        if core is None:
            return
        self._core = None
        try:
            if not self._file.closed and not self._file.read_only:
                core.store_index(only_if_due=True)
        finally:
            if self._owns_file:
                self._file.close()

    def __enter__(self) -> VectorKVault:
        self._native  # noqa: B018 - raises ClosedError when closed
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def transaction(self) -> Transaction:
        """An explicit transaction over every table of the file (see
        :meth:`KVault.transaction`)."""
        return self._file.transaction()

    def __repr__(self) -> str:
        if getattr(self, "_file", None) is None or not hasattr(self, "dimensions"):
            return "<VectorKVault (not opened)>"
        count = len(self) if self._core is not None and not self._file.closed else "closed"
        return (
            f"VectorKVault(path={self.path!r}, table={self.table!r}, "
            f"dimensions={self.dimensions}, metric={self.metric!r}, "
            f"vector_type={self.vector_type!r}, count={count})"
        )

    # -- vectors and values ----------------------------------------------------------------------
    def _vectors(self, vectors: Any, many: bool) -> Tuple[bytes, int]:
        """Stored-form bytes and the number of vectors; ``TypeError``/``ValueError`` for
        anything that is not ``n`` vectors of this collection's shape."""
        d = self.dimensions
        width = self._core.vector_bytes if self._core is not None else 0
        if isinstance(vectors, (bytes, bytearray, memoryview)):
            raw = bytes(vectors)
            if len(raw) == 0 or len(raw) % width or (not many and len(raw) != width):
                raise InvalidArgument(
                    f"expected {'a multiple of ' if many else ''}{width} vector bytes "
                    f"({d} {self.vector_type} dimensions), got {len(raw)}"
                )
            return raw, len(raw) // width
        if not isinstance(vectors, (np.ndarray, list, tuple)):
            raise TypeError(
                f"vectors must be numpy arrays, lists, tuples or bytes, not {type(vectors).__name__}"
            )
        array = np.asarray(vectors)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"vector elements must be numbers, not {array.dtype}")
        expected = (array.shape[0], d) if many and array.ndim == 2 else (d,)
        if array.shape != expected or (many and array.ndim != 2):
            want = f"(n, {d})" if many else f"({d},)"
            raise InvalidArgument(f"expected vector shape {want}, got {array.shape}")
        if self.vector_type == "bit":
            if array.dtype.kind == "f" and not np.isin(array, (0.0, 1.0)).all():
                raise InvalidArgument("bit vectors take 0/1 (or bool) elements")
            if array.dtype.kind in "iu" and ((array < 0) | (array > 1)).any():
                raise InvalidArgument("bit vectors take 0/1 (or bool) elements")
            packed = np.packbits(array.astype(bool), axis=-1)
            return packed.tobytes(), (array.shape[0] if many else 1)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidArgument("vectors must not contain NaN or infinite elements")
        if self.vector_type == "i8":
            if array.dtype.kind == "f" and not (array == np.round(array)).all():
                raise InvalidArgument("i8 vectors take whole numbers")
            if ((array < -128) | (array > 127)).any():
                raise InvalidArgument("i8 vector elements must be between -128 and 127")
        elif array.dtype.kind == "f" and self.vector_type == "f32":
            if (np.abs(array[np.isfinite(array)]) > np.finfo(np.float32).max).any():
                raise InvalidArgument("vector elements are too large for f32")
        elif self.vector_type == "f16":
            if (np.abs(array.astype(np.float64)) > np.finfo(np.float16).max).any():
                raise InvalidArgument("vector elements are too large for f16")
        stored = np.ascontiguousarray(array, dtype=self._dtype)
        return stored.tobytes(), (array.shape[0] if many else 1)

    def _vector_out(self, data: bytes) -> np.ndarray:
        array = np.frombuffer(data, dtype=self._dtype)
        if self.vector_type == "bit":
            return np.unpackbits(array).astype(bool)
        return array.copy()

    def _value(self, value: Any) -> Tuple[int, bytes]:
        data, code = self._codec.encode(value)
        return code, bytes(data)

    def _decode(self, code: int, data: bytes) -> Any:
        return self._codec.decode(code, data)

    # -- writes ------------------------------------------------------------------------------------
    def insert(self, vector: VectorLike, value: Any, metadata: Optional[Dict[str, Any]] = None) -> int:
        """Stores ``value`` under ``vector`` (with optional filterable ``metadata``); returns
        the new item's id."""
        raw, _ = self._vectors(vector, many=False)
        return self._native.insert_many(raw, [self._value(value)], None, [_metadata_json(metadata)])[0]

    def insert_many(
        self,
        vectors: Any,
        values: Sequence[Any],
        metadata: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
    ) -> List[int]:
        """Stores ``n`` items in one transaction (``vectors``: an ``(n, d)`` array); returns
        their ids. Every item is checked first: on any bad one nothing is written."""
        raw, n = self._vectors(vectors, many=True)
        if len(values) != n:
            raise InvalidArgument(f"{n} vectors need {n} values, got {len(values)}")
        if metadata is not None and len(metadata) != n:
            raise InvalidArgument(f"{n} vectors need {n} metadata entries, got {len(metadata)}")
        encoded = [self._value(v) for v in values]
        meta = None if metadata is None else [_metadata_json(m) for m in metadata]
        return self._native.insert_many(raw, encoded, None, meta)

    def upsert(
        self, key: Key, vector: VectorLike, value: Any, metadata: Optional[Dict[str, Any]] = None
    ) -> int:
        """Stores ``value`` under the application's ``key`` (str, bytes or tuple), replacing the
        item with that key if there is one (its id is kept); returns the id."""
        raw, _ = self._vectors(vector, many=False)
        return self._native.insert_many(raw, [self._value(value)], [key], [_metadata_json(metadata)])[0]

    def upsert_many(
        self,
        keys: Sequence[Key],
        vectors: Any,
        values: Sequence[Any],
        metadata: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
    ) -> List[int]:
        """:meth:`upsert` for ``n`` items in one transaction."""
        raw, n = self._vectors(vectors, many=True)
        if len(keys) != n or len(values) != n:
            raise InvalidArgument(f"{n} vectors need {n} keys and {n} values")
        if metadata is not None and len(metadata) != n:
            raise InvalidArgument(f"{n} vectors need {n} metadata entries, got {len(metadata)}")
        encoded = [self._value(v) for v in values]
        meta = None if metadata is None else [_metadata_json(m) for m in metadata]
        return self._native.insert_many(raw, encoded, list(keys), meta)

    def update(
        self,
        id: int,
        vector: Optional[VectorLike] = None,
        value: Optional[Any] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Changes item ``id``'s vector, value or metadata; ``NotFound`` when it does not exist,
        ``ValueError`` when nothing is given."""
        check_int("id", id)
        if vector is None and value is None and metadata is None:
            raise InvalidArgument("update needs a vector, a value or metadata")
        raw = self._vectors(vector, many=False)[0] if vector is not None else None
        encoded = self._value(value) if value is not None else None
        meta = _metadata_json(metadata) if metadata is not None else None
        if not self._native.update(id, raw, encoded, meta, False):
            raise NotFound(f"no vector with id {id}")

    def delete(self, id_or_key: Union[int, Key]) -> bool:
        """Deletes the item with this id (int) or key; whether it existed."""
        if isinstance(id_or_key, int) and not isinstance(id_or_key, bool):
            return self._native.delete([id_or_key]) > 0
        return self._native.delete_keys([id_or_key]) > 0

    def delete_many(self, ids: Iterable[int]) -> int:
        """Deletes items by id in one transaction; how many existed."""
        return self._native.delete([check_int("id", i) for i in ids])

    def clear(self) -> int:
        """Deletes every item; how many there were."""
        return self._native.clear()

    def __setitem__(self, vector: VectorLike, value: Any) -> None:
        self.insert(vector, value)

    # -- reads -------------------------------------------------------------------------------------
    def get_by_id(self, id: int) -> Tuple[np.ndarray, Any]:
        """``(vector, value)`` of item ``id``; ``NotFound`` when it does not exist."""
        check_int("id", id)
        row = self._native.get(id)
        if row is None:
            raise NotFound(f"no vector with id {id}")
        return self._vector_out(row[2]), self._decode(row[3], row[4])

    def get_by_key(self, key: Key) -> Tuple[np.ndarray, Any]:
        """``(vector, value)`` of the item with ``key``; ``NotFound`` when there is none."""
        row = self._native.get_by_key(key)
        if row is None:
            raise NotFound(f"no vector with key {key!r}")
        return self._vector_out(row[2]), self._decode(row[3], row[4])

    def metadata(self, id_or_key: Union[int, Key]) -> Optional[Dict[str, Any]]:
        """The metadata of an item (by id or key); ``NotFound`` when it does not exist."""
        if isinstance(id_or_key, int) and not isinstance(id_or_key, bool):
            row = self._native.get(id_or_key)
        else:
            row = self._native.get_by_key(id_or_key)
        if row is None:
            raise NotFound(f"no vector {id_or_key!r}")
        return None if row[5] is None else json.loads(row[5])

    def exists(self, id: int) -> bool:
        """Whether an item with this id exists."""
        if isinstance(id, bool) or not isinstance(id, int):
            return False
        return self._native.exists(id)

    def count(self) -> int:
        """Number of items."""
        return self._native.count()

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, id_or_key: object) -> bool:
        if isinstance(id_or_key, int) and not isinstance(id_or_key, bool):
            return self._native.exists(id_or_key)
        if isinstance(id_or_key, (str, bytes, tuple)):
            return self._native.get_by_key(id_or_key) is not None
        return False

    def ids(self) -> Iterator[int]:
        """Every item id, ascending (read in pages, so the collection may be large)."""
        after = -(1 << 63)
        while True:
            page = self._native.ids(after, _LIST_BATCH)
            if not page:
                return
            for item_id, _ in page:
                yield item_id
            after = page[-1][0]

    def keys(self) -> Iterator[Key]:
        """The keys of the items that have one, in id order."""
        after = -(1 << 63)
        while True:
            page = self._native.ids(after, _LIST_BATCH)
            if not page:
                return
            for _, key in page:
                if key is not None:
                    yield key
            after = page[-1][0]

    def __iter__(self) -> Iterator[int]:
        return self.ids()

    # -- search ------------------------------------------------------------------------------------
    def search(
        self,
        query_vector: VectorLike,
        k: int = 10,
        metric: Optional[str] = None,
        *,
        where: Optional[Dict[str, Any]] = None,
        exact: bool = False,
        ef_search: Optional[int] = None,
        with_metadata: bool = False,
    ) -> List[Tuple[Any, ...]]:
        """The ``k`` nearest items: ``[(id, distance, value)]``, nearest first (an item stored
        with :meth:`upsert` gives its key instead of its id). ``where`` keeps items whose
        metadata field equals the value (or one of a list of values); ``exact`` skips the HNSW
        graph; ``metric`` searches exactly by another metric; ``with_metadata`` appends each
        item's metadata to its tuple."""
        check_int("k", k)
        if k < 0:
            raise InvalidArgument(f"k must be >= 0, not {k}")
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"metric must be a str, not {type(metric).__name__}")
        raw, _ = self._vectors(query_vector, many=False)
        rows = self._native.search(raw, k, metric, bool(exact), _filter_clauses(where), ef_search)
        out: List[Tuple[Any, ...]] = []
        for item_id, distance, key, code, data, meta in rows:
            found = (item_id if key is None else key, float(distance), self._decode(code, data))
            if with_metadata:
                found += (None if meta is None else json.loads(meta),)
            out.append(found)
        return out

    def search_many(
        self,
        queries: Any,
        k: int = 10,
        metric: Optional[str] = None,
        *,
        where: Optional[Dict[str, Any]] = None,
        exact: bool = False,
        ef_search: Optional[int] = None,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ids to each of ``m`` queries (an ``(m, d)`` array) as two ``(m, k)``
        arrays: ids (int64, -1 where fewer than ``k`` items exist) and distances (float32,
        ``inf`` there). Runs without the GIL, on every core."""
        check_int("k", k)
        if k < 0:
            raise InvalidArgument(f"k must be >= 0, not {k}")
        raw, m = self._vectors(queries, many=True)
        ids, distances = self._native.search_many(
            raw, k, metric, bool(exact), _filter_clauses(where), ef_search
        )
        return (
            np.frombuffer(ids, dtype="<i8").reshape(m, k).copy(),
            np.frombuffer(distances, dtype="<f4").reshape(m, k).copy(),
        )

    def get(self, query_vector: VectorLike, metric: Optional[str] = None) -> Any:
        """The value of the nearest item; ``NotFound`` when the collection is empty."""
        found = self.search(query_vector, k=1, metric=metric)
        if not found:
            raise NotFound("no vectors in the collection")
        return found[0][2]

    def __getitem__(self, query_vector: VectorLike) -> Any:
        try:
            return self.get(query_vector)
        except NotFound as e:
            raise KeyError("no vectors in the collection") from e

    # -- index -------------------------------------------------------------------------------------
    def build_index(self) -> None:
        """Builds the HNSW graph from the stored vectors now and stores it in the file (it is
        otherwise built by the first search that needs it)."""
        self._native.build_index()

    def save_index(self) -> bool:
        """Stores the HNSW graph if it changed since it was last stored; whether it did."""
        return self._native.store_index()

    def info(self) -> Dict[str, Any]:
        """A summary: ``dimensions``, ``metric``, ``vector_type`` (kohakuvault's names:
        ``"float32"``, ...), ``count``, the index settings, the stored graph's size and the
        memory this process's engines use."""
        info = dict(self._native.info())
        info["vector_type"] = _INFO_NAMES[info["vector_type"]]
        info["table"] = self.table
        return info

    @staticmethod
    def tables(path_or_vault: Any, *, key: KeyArg = None) -> List[str]:
        """Names of the vector collections in a file (a path, or an open vault; ``key`` for
        a path to an encrypted file)."""
        return on_file(path_or_vault, VectorTableCore.names, read_only=True, key=key)


def drop_vector_table(path_or_vault: Any, table: str, *, key: KeyArg = None) -> bool:
    """Deletes a vector collection (items, index, registry row); whether it existed. ``key``: for a
    path to an encrypted file."""
    return on_file(
        path_or_vault, lambda native: VectorTableCore.drop_table(native, table), read_only=False, key=key
    )


__all__ = ["VectorKVault", "drop_vector_table"]
