"""TextVault: documents with values and metadata in the vault file, searched by words.

SQLite's FTS5 index over one or more named text columns, ranked by BM25, in the same file (and
the same transactions) as the vault's blobs, columns and vectors. Plain-word queries by default
(nothing the user types is FTS5 syntax), or FTS5 syntax with ``escape=False``. A choice of
tokenizer per table, column restriction, metadata filters, paging, snippets and highlights.
Compatible with kohakuvault 1.1.0's ``TextVault``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ._ambervault import TextTableCore
from ._codec import ValueCodec
from ._file import KeyArg, VaultFile, check_int, fspath, on_file
from ._metadata import filter_clauses, metadata_json
from ._value_switches import ValueSwitches
from .cache import BatchingCache
from .exceptions import ClosedError, InvalidArgument, NotFound
from .transaction import Transaction

TextInput = Union[str, Mapping[str, str]]
Texts = Union[str, Dict[str, str]]

_MODES = ("all", "any", "phrase", "raw")
_LIST_BATCH = 1024


def _check_count(name: str, value: Any) -> int:
    check_int(name, value)
    if value < 0:
        raise InvalidArgument(f"{name} must be >= 0, not {value}")
    return int(value)


class TextVault(ValueSwitches):
    """Documents (one or more named texts, a value, optional metadata) searched by words with
    SQLite's FTS5, ranked by BM25.

    :param path_or_vault: a path (or ``":memory:"``), or a :class:`KVault` /
        :class:`ColumnVault` / :class:`VectorKVault` whose file (and connection and
        transactions) the table then shares.
    :param table: the table's name.
    :param columns: the text columns (default ``["content"]`` for a new table; an existing
        table keeps its own, and a different explicit list is an error).
    :param tokenizer: ``"unicode61"`` (default: Unicode words, case and diacritics folded),
        ``"porter"`` (also English stemming: *running* finds *runs*) or ``"trigram"``
        (substrings of three or more characters; with ``mode="any"`` typo-tolerant). Fixed
        when the table is created.
    :param read_only: open the file read-only (for a path).
    :param auto_pack: store Python values (not only bytes), as :class:`KVault` does.
    :param allow_pickle: allow :class:`~ambervault.Pickle` values.
    :param checkpoints: ``"auto"`` or ``"external"`` for a path (see :class:`KVault`).
    :param key: the key of an encrypted file, for a path (see :class:`KVault`).

    >>> tv = TextVault(":memory:", tokenizer="porter")
    >>> doc = tv.insert("The cats are running home", {"page": 1})
    >>> [(hit_id, value) for hit_id, score, value in tv.search("cat runs")]
    [(1, {'page': 1})]
    """

    def __init__(
        self,
        path_or_vault: Any,
        table: str = "text_vault",
        columns: Optional[Sequence[str]] = None,
        *,
        tokenizer: Optional[str] = None,
        read_only: bool = False,
        auto_pack: bool = True,
        allow_pickle: bool = False,
        checkpoints: str = "auto",
        key: KeyArg = None,
    ) -> None:
        self._core: Optional[TextTableCore] = None
        if not isinstance(table, str):
            raise TypeError(f"table must be a str, not {type(table).__name__}")
        column_list: Optional[List[str]] = None
        if columns is not None:
            if isinstance(columns, str) or not isinstance(columns, (list, tuple)):
                raise TypeError(f"columns must be a list of str, not {type(columns).__name__}")
            for name in columns:
                if not isinstance(name, str):
                    raise TypeError(f"column names must be str, not {type(name).__name__}")
            column_list = list(columns)
        if tokenizer is not None and not isinstance(tokenizer, str):
            raise TypeError(f"tokenizer must be a str, not {type(tokenizer).__name__}")
        self._codec = ValueCodec(auto_pack, allow_pickle)
        self._headers = True
        file = getattr(path_or_vault, "_file", None)
        if isinstance(file, VaultFile):
            self._file = file
            self._owns_file = False
        else:
            path = fspath(path_or_vault, "TextVault takes a path, a KVault, a ColumnVault or a VectorKVault")
            self._file = VaultFile(path, read_only=read_only, checkpoints=checkpoints, key=key)
            self._owns_file = True
        try:
            self._core = TextTableCore(self._file.native, table, column_list, tokenizer)
        except BaseException:
            if self._owns_file:
                self._file.close()
            raise
        self.path = self._file.path
        self.table = table
        self._columns: List[str] = self._core.columns
        self.tokenizer: str = self._core.tokenizer
        self._file.attach(self)

    # -- file ------------------------------------------------------------------------------------
    def _caches(self) -> List[BatchingCache]:
        return []

    def _stop_caches(self) -> None:
        pass

    @property
    def _native(self) -> TextTableCore:
        core = self._core
        if core is None or self._file.closed:
            raise ClosedError("TextVault is closed")
        return core

    @property
    def columns(self) -> List[str]:
        """The text columns, in order."""
        return list(self._columns)

    def close(self) -> None:
        """Releases the table (and the file, if this object opened it). Idempotent."""
        if self._core is None:
            return
        self._core = None
        if self._owns_file:
            self._file.close()

    def __enter__(self) -> TextVault:
        self._native  # noqa: B018 - raises ClosedError when closed
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def transaction(self) -> Transaction:
        """An explicit transaction over every table of the file (see
        :meth:`KVault.transaction`): documents inserted in it are searchable inside it, and
        vanish with a rollback."""
        return self._file.transaction()

    def __repr__(self) -> str:
        if getattr(self, "_file", None) is None or not hasattr(self, "tokenizer"):
            return "<TextVault (not opened)>"
        count = len(self) if self._core is not None and not self._file.closed else "closed"
        return (
            f"TextVault(path={self.path!r}, table={self.table!r}, columns={self._columns!r}, "
            f"tokenizer={self.tokenizer!r}, count={count})"
        )

    # -- conversions -------------------------------------------------------------------------------
    def _texts(self, texts: Any) -> List[str]:
        """One str per column from a str (one-column tables) or a dict column -> str."""
        columns = self._columns
        if isinstance(texts, str):
            if len(columns) != 1:
                raise InvalidArgument(
                    f"this TextVault has columns {columns}: give texts as a dict column -> str"
                )
            return [texts]
        if not isinstance(texts, Mapping):
            raise TypeError(f"texts must be a str or a dict column -> str, not {type(texts).__name__}")
        unknown = [name for name in texts if name not in columns]
        if unknown:
            raise InvalidArgument(f"unknown column {unknown[0]!r}; this TextVault has columns {columns}")
        out = []
        for name in columns:
            if name not in texts:
                raise InvalidArgument(f"missing column {name!r} (this TextVault has columns {columns})")
            text = texts[name]
            if not isinstance(text, str):
                raise TypeError(f"text of column {name!r} must be a str, not {type(text).__name__}")
            out.append(text)
        return out

    def _texts_out(self, texts: List[str]) -> Texts:
        if len(self._columns) == 1:
            return texts[0]
        return dict(zip(self._columns, texts))

    def _value(self, value: Any) -> Tuple[int, bytes]:
        if type(value) is bytes:
            return 0, value
        data, code = self._codec.encode(value)
        return code, bytes(data)

    def _decode(self, code: int, data: bytes) -> Any:
        return self._codec.decode(code, data)

    # -- writes ------------------------------------------------------------------------------------
    def insert(self, texts: TextInput, value: Any, metadata: Optional[Dict[str, Any]] = None) -> int:
        """Stores a document: ``texts`` (a str for a one-column table, else a dict column ->
        str), its ``value`` (any typed value) and optional filterable ``metadata``. Returns its
        id."""
        flat = self._texts(texts)
        code, data = self._value(value)
        meta = metadata_json(metadata)
        return self._native.insert_many(flat, bytes((code,)), [data], None if meta is None else [meta])[0]

    def insert_many(self, items: Iterable[Any]) -> List[int]:
        """Stores documents in one transaction: ``items`` yields ``(texts, value)`` or ``(texts,
        value, metadata)``. Returns their ids in order. Every item is checked first: on any bad
        one nothing is written.

        >>> tv = TextVault(":memory:")
        >>> tv.insert_many([("first note", 1), ("second note", 2, {"tag": "b"})])
        [1, 2]
        """
        texts: List[str] = []
        codes = bytearray()
        values: List[bytes] = []
        metadata: List[Optional[str]] = []
        any_metadata = False
        one_column = len(self._columns) == 1
        for index, item in enumerate(items):
            if not isinstance(item, (tuple, list)):
                raise TypeError(
                    f"item {index}: expected a (texts, value[, metadata]) tuple, not {type(item).__name__}"
                )
            if len(item) not in (2, 3):
                raise InvalidArgument(
                    f"item {index}: expected (texts, value[, metadata]), got {len(item)} elements"
                )
            doc_texts, value = item[0], item[1]
            try:
                if one_column and type(doc_texts) is str:
                    texts.append(doc_texts)
                else:
                    texts.extend(self._texts(doc_texts))
                if type(value) is bytes:
                    codes.append(0)
                    values.append(value)
                else:
                    code, data = self._value(value)
                    codes.append(code)
                    values.append(data)
                meta = metadata_json(item[2]) if len(item) == 3 else None
            except (TypeError, ValueError) as e:
                raise type(e)(f"item {index}: {e}") from None
            any_metadata = any_metadata or meta is not None
            metadata.append(meta)
        if not values:
            return []
        return self._native.insert_many(texts, bytes(codes), values, metadata if any_metadata else None)

    def put(self, texts: TextInput, value: Any, metadata: Optional[Dict[str, Any]] = None) -> int:
        """Stores ``value`` under the exact ``texts``: the first document with exactly these
        texts gets the new value and metadata (keeping its id), else a document is inserted.
        Returns the id. ``tv[text] = value`` calls this."""
        return self._native.put(self._texts(texts), self._value(value), metadata_json(metadata))

    def update(
        self,
        id: int,
        texts: Optional[TextInput] = None,
        value: Optional[Any] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Changes document ``id``'s texts (re-indexed at once), value or metadata;
        ``NotFound`` when it does not exist, ``ValueError`` when nothing is given."""
        check_int("id", id)
        if texts is None and value is None and metadata is None:
            raise InvalidArgument("update needs texts, a value or metadata")
        flat = self._texts(texts) if texts is not None else None
        encoded = self._value(value) if value is not None else None
        meta = metadata_json(metadata) if metadata is not None else None
        if not self._native.update(id, flat, encoded, meta, False):
            raise NotFound(f"no document with id {id}")

    def delete(self, id: int) -> bool:
        """Deletes document ``id``; whether it existed."""
        check_int("id", id)
        return self._native.delete([id]) > 0

    def delete_many(self, ids: Iterable[int]) -> int:
        """Deletes documents by id in one transaction; how many existed."""
        return self._native.delete([check_int("id", i) for i in ids])

    def clear(self) -> int:
        """Deletes every document; how many there were."""
        return self._native.clear()

    def rebuild_index(self) -> None:
        """Rebuilds the full-text index from the stored texts (``check()`` says when it is
        needed; the texts are the source of truth)."""
        self._native.rebuild()

    def optimize_index(self) -> None:
        """Merges the full-text index's segments into one (faster searches after many
        writes). :meth:`KVault.optimize` does this for every text table of the file."""
        self._native.optimize()

    # -- dict-style access keyed by text -------------------------------------------------------
    def __setitem__(self, texts: TextInput, value: Any) -> None:
        self.put(texts, value)

    def __getitem__(self, texts: TextInput) -> Any:
        try:
            return self.get(texts)
        except NotFound:
            raise KeyError(texts) from None

    def __delitem__(self, texts: TextInput) -> None:
        row = self._native.get_by_text(self._texts(texts))
        if row is None:
            raise KeyError(texts)
        self._native.delete([row[0]])

    def __contains__(self, id_or_texts: object) -> bool:
        """``id in tv`` (an int: that document exists) or ``text in tv`` (a document has
        exactly these texts)."""
        if isinstance(id_or_texts, int) and not isinstance(id_or_texts, bool):
            return self._native.exists(id_or_texts)
        if isinstance(id_or_texts, (str, Mapping)):
            try:
                return self._native.get_by_text(self._texts(id_or_texts)) is not None
            except (TypeError, ValueError):
                return False
        return False

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[int]:
        return self.ids()

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, texts: TextInput) -> Any:
        """The value of the first document whose texts equal ``texts`` exactly (a str for a
        one-column table, a dict for several); ``NotFound`` (a ``KeyError``) when there is
        none."""
        row = self._native.get_by_text(self._texts(texts))
        if row is None:
            raise NotFound(f"no document with text {texts!r}")
        return self._decode(row[2], row[3])

    def get_by_id(self, id: int) -> Tuple[Texts, Any]:
        """``(texts, value)`` of document ``id`` (texts a str for a one-column table, else a
        dict); ``NotFound`` when it does not exist."""
        check_int("id", id)
        row = self._native.get(id)
        if row is None:
            raise NotFound(f"no document with id {id}")
        return self._texts_out(row[1]), self._decode(row[2], row[3])

    def metadata(self, id: int) -> Optional[Dict[str, Any]]:
        """The metadata of document ``id``; ``NotFound`` when it does not exist."""
        check_int("id", id)
        row = self._native.get(id)
        if row is None:
            raise NotFound(f"no document with id {id}")
        return None if row[4] is None else json.loads(row[4])

    def exists(self, id: int) -> bool:
        """Whether document ``id`` exists."""
        if isinstance(id, bool) or not isinstance(id, int):
            return False
        return self._native.exists(id)

    def count(self) -> int:
        """Number of documents."""
        return self._native.count()

    def keys(self, limit: int = 10000, offset: int = 0) -> List[int]:
        """Up to ``limit`` document ids after skipping ``offset``, ascending."""
        return self._native.ids(_check_count("limit", limit), _check_count("offset", offset))

    def ids(self) -> Iterator[int]:
        """Every document id, ascending (read in pages, so the table may be large)."""
        after = -(1 << 63)
        while True:
            page = self._native.ids_after(after, _LIST_BATCH)
            if not page:
                return
            yield from page
            after = page[-1]

    def info(self) -> Dict[str, Any]:
        """A summary: ``table``, ``columns``, ``tokenizer``, ``count``."""
        return dict(self._native.info())

    # -- search -------------------------------------------------------------------------------------
    def _mode(self, escape: bool, mode: str) -> str:
        if not isinstance(mode, str) or mode not in _MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(map(repr, _MODES))}, not {mode!r}")
        return mode if escape else "raw"

    def _search(
        self,
        query: str,
        k: int,
        column: Optional[str],
        escape: bool,
        mode: str,
        where: Optional[Dict[str, Any]],
        offset: int,
        texts: bool = False,
        highlight: Optional[Tuple[str, str]] = None,
        snippet: Optional[Tuple[Optional[str], int, str, str, str]] = None,
    ) -> List[Tuple[Any, ...]]:
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, not {type(query).__name__}")
        if column is not None and not isinstance(column, str):
            raise TypeError(f"column must be a str, not {type(column).__name__}")
        return self._native.search(
            query,
            _check_count("k", k),
            _check_count("offset", offset),
            column,
            self._mode(escape, mode),
            filter_clauses(where),
            texts,
            highlight,
            snippet,
        )

    def search(
        self,
        query: str,
        k: int = 10,
        column: Optional[str] = None,
        escape: bool = True,
        *,
        mode: str = "all",
        where: Optional[Dict[str, Any]] = None,
        offset: int = 0,
        with_metadata: bool = False,
    ) -> List[Tuple[Any, ...]]:
        """The ``k`` best documents for ``query``: ``[(id, score, value)]``, best first (score:
        BM25, higher is better).

        :param column: match only this column's text.
        :param escape: ``True`` (default): ``query`` is plain words, never FTS5 syntax (quotes,
            ``AND``, ``*``, ``:``, parentheses are only text); ``False``: FTS5 syntax (``AND``,
            ``OR``, ``NOT``, ``"phrases"``, ``prefix*``, ``NEAR(...)``, ``column:``), and a
            malformed query raises :class:`InvalidArgument`.
        :param mode: for plain words: ``"all"`` (every word must appear), ``"any"`` (any word;
            more and rarer words rank first; per trigram in a trigram table, so typos still
            match) or ``"phrase"`` (the words adjacent, in order).
        :param where: metadata filter ``{field: value or [values]}`` (all fields must match).
        :param offset: skip this many best documents first (paging).
        :param with_metadata: append each document's metadata to its tuple.
        """
        rows = self._search(query, k, column, escape, mode, where, offset)
        out: List[Tuple[Any, ...]] = []
        for doc_id, score, code, data, meta, _, _ in rows:
            found: Tuple[Any, ...] = (doc_id, score, self._decode(code, data))
            if with_metadata:
                found += (None if meta is None else json.loads(meta),)
            out.append(found)
        return out

    def search_with_text(
        self,
        query: str,
        k: int = 10,
        column: Optional[str] = None,
        escape: bool = True,
        *,
        mode: str = "all",
        where: Optional[Dict[str, Any]] = None,
        offset: int = 0,
    ) -> List[Tuple[int, float, Texts, Any]]:
        """As :meth:`search`, with each document's texts: ``[(id, score, texts, value)]``
        (texts a str for a one-column table, else a dict)."""
        rows = self._search(query, k, column, escape, mode, where, offset, texts=True)
        return [
            (doc_id, score, self._texts_out(texts or []), self._decode(code, data))
            for doc_id, score, code, data, _, texts, _ in rows
        ]

    def search_with_highlights(
        self,
        query: str,
        k: int = 10,
        column: Optional[str] = None,
        escape: bool = True,
        *,
        highlight_start: str = "**",
        highlight_end: str = "**",
        mode: str = "all",
        where: Optional[Dict[str, Any]] = None,
        offset: int = 0,
    ) -> List[Tuple[int, float, Texts, Any]]:
        """As :meth:`search_with_text`, with every matched term in the texts between
        ``highlight_start`` and ``highlight_end``."""
        for name, marker in (("highlight_start", highlight_start), ("highlight_end", highlight_end)):
            if not isinstance(marker, str):
                raise TypeError(f"{name} must be a str, not {type(marker).__name__}")
        rows = self._search(
            query, k, column, escape, mode, where, offset, highlight=(highlight_start, highlight_end)
        )
        return [
            (doc_id, score, self._texts_out(texts or []), self._decode(code, data))
            for doc_id, score, code, data, _, texts, _ in rows
        ]

    def search_with_snippets(
        self,
        query: str,
        k: int = 10,
        snippet_column: Optional[str] = None,
        snippet_tokens: int = 10,
        highlight_start: str = "**",
        highlight_end: str = "**",
        escape: bool = True,
        *,
        column: Optional[str] = None,
        ellipsis: str = "...",
        mode: str = "all",
        where: Optional[Dict[str, Any]] = None,
        offset: int = 0,
    ) -> List[Tuple[int, float, str, Any]]:
        """As :meth:`search`, with a fragment of ``snippet_tokens`` tokens (1-64) around the
        best matches: ``[(id, score, snippet, value)]``. The fragment comes from
        ``snippet_column`` (default: ``column`` if given, else the first column); matched
        terms are between the markers, and ``ellipsis`` marks where the text was cut.

        >>> tv = TextVault(":memory:")
        >>> _ = tv.insert("A long note about Python, and why Python is handy.", None)
        >>> tv.search_with_snippets("python", snippet_tokens=4)[0][2]
        '...**Python**, and why **Python**...'
        """
        check_int("snippet_tokens", snippet_tokens)
        for name, text in (
            ("highlight_start", highlight_start),
            ("highlight_end", highlight_end),
            ("ellipsis", ellipsis),
        ):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, not {type(text).__name__}")
        if snippet_column is not None and not isinstance(snippet_column, str):
            raise TypeError(f"snippet_column must be a str, not {type(snippet_column).__name__}")
        if not 1 <= snippet_tokens <= 64:
            raise InvalidArgument(f"snippet_tokens must be between 1 and 64, not {snippet_tokens}")
        snippet = (snippet_column, snippet_tokens, highlight_start, highlight_end, ellipsis)
        rows = self._search(query, k, column, escape, mode, where, offset, snippet=snippet)
        return [
            (doc_id, score, text or "", self._decode(code, data))
            for doc_id, score, code, data, _, _, text in rows
        ]

    def count_matches(
        self,
        query: str,
        column: Optional[str] = None,
        escape: bool = False,
        *,
        mode: str = "all",
        where: Optional[Dict[str, Any]] = None,
    ) -> int:
        """How many documents match ``query``. As in kohakuvault, ``query`` is FTS5 syntax by
        default here (``escape=False``); pass ``escape=True`` to count what :meth:`search`
        finds for plain words."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, not {type(query).__name__}")
        if column is not None and not isinstance(column, str):
            raise TypeError(f"column must be a str, not {type(column).__name__}")
        return self._native.count_matches(query, self._mode(escape, mode), column, filter_clauses(where))

    @staticmethod
    def tables(path_or_vault: Any, *, key: KeyArg = None) -> List[str]:
        """Names of the text tables in a file (a path, or an open vault; ``key`` for
        a path to an encrypted file)."""
        return on_file(path_or_vault, TextTableCore.names, read_only=True, key=key)


def drop_text_table(path_or_vault: Any, table: str, *, key: KeyArg = None) -> bool:
    """Deletes a text table (documents, index, registry row); whether it existed. ``key``: for a
    path to an encrypted file."""
    return on_file(
        path_or_vault, lambda native: TextTableCore.drop_table(native, table), read_only=False, key=key
    )


__all__ = ["TextVault", "drop_text_table"]
