"""Full-text workloads: index short documents with one bulk insert, and answer word queries one
by one (BM25, k=10, values fetched), with each system's fastest documented path (named in
``TEXT_NOTES``).

The text is generated and seeded: a vocabulary of 20,000 pronounceable pseudo-words whose
frequencies follow Zipf's law (s = 1.1, as in natural language), documents of 6 to 19 words
drawn from it, and 10,000 queries of one to three words drawn from the same law without its 50
most frequent words (queries rarely search for stop words). Every system runs the same FTS5
query for a query: its words, each quoted, all required (ambervault's plain-word default).
Generating the text takes about a second and is untimed.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

SEED = 19
VOCABULARY = 20_000
ZIPF_S = 1.1
QUERIES = 10_000
K = 10
SKIP_FREQUENT = 50

TextResult = Tuple[float, int]
Docs = List[Tuple[str, bytes]]


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def vocabulary() -> List[str]:
    """``VOCABULARY`` distinct pseudo-words, most frequent first."""
    rng = np.random.default_rng(SEED)
    onsets = [
        "",
        "b",
        "c",
        "d",
        "f",
        "g",
        "h",
        "k",
        "l",
        "m",
        "n",
        "p",
        "r",
        "s",
        "t",
        "v",
        "w",
        "st",
        "tr",
        "pl",
    ]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st"]
    words: List[str] = []
    seen = set()
    while len(words) < VOCABULARY:
        syllables = 1 + int(rng.integers(0, 2)) + (len(words) > 1000)
        word = "".join(
            onsets[rng.integers(len(onsets))]
            + vowels[rng.integers(len(vowels))]
            + codas[rng.integers(len(codas))]
            for _ in range(syllables)
        )
        if len(word) > 1 and word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _zipf(skip: int = 0) -> np.ndarray:
    ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
    p = ranks**-ZIPF_S
    p[:skip] = 0
    return p / p.sum()


def documents(n: int) -> Docs:
    """``n`` documents of 6 to 19 Zipf-distributed words, with small values."""
    words = np.array(vocabulary())
    rng = np.random.default_rng([SEED, n])
    lengths = rng.integers(6, 20, n)
    picks = words[rng.choice(VOCABULARY, size=int(lengths.sum()), p=_zipf())]
    out: Docs = []
    at = 0
    for i, length in enumerate(lengths.tolist()):
        out.append((" ".join(picks[at : at + length].tolist()), b"%d" % i))
        at += length
    return out


def queries() -> List[str]:
    """``QUERIES`` queries of 1 (50%), 2 (35%) or 3 (15%) words."""
    words = np.array(vocabulary())
    rng = np.random.default_rng([SEED, 1])
    sizes = rng.choice([1, 2, 3], size=QUERIES, p=[0.5, 0.35, 0.15])
    picks = words[rng.choice(VOCABULARY, size=int(sizes.sum()), p=_zipf(SKIP_FREQUENT))]
    out = []
    at = 0
    for size in sizes.tolist():
        out.append(" ".join(picks[at : at + size].tolist()))
        at += size
    return out


def quoted(query: str) -> str:
    """The FTS5 query every system runs: each word quoted, all required."""
    return " ".join('"' + w.replace('"', '""') + '"' for w in query.split())


class AmbervaultText:
    def __init__(self, d: str) -> None:
        import ambervault

        self.path = os.path.join(d, "text.db")
        self.tv = ambervault.TextVault(self.path, table="docs")

    def insert(self, docs: Docs) -> None:
        self.tv.insert_many(docs)

    def reopen(self) -> None:
        import ambervault

        self.tv.close()
        self.tv = ambervault.TextVault(self.path, table="docs")

    def search(self, query: str) -> List[Any]:
        return self.tv.search(query, k=K)

    def close(self) -> None:
        self.tv.close()


class KohakuText:
    def __init__(self, d: str) -> None:
        import kohakuvault

        self.path = os.path.join(d, "text.db")
        self.tv = kohakuvault.TextVault(self.path, table="docs")

    def insert(self, docs: Docs) -> None:
        self.tv.insert_many(docs)

    def reopen(self) -> None:
        import gc

        import kohakuvault

        del self.tv
        gc.collect()
        self.tv = kohakuvault.TextVault(self.path, table="docs")

    def search(self, query: str) -> List[Any]:
        # Its default escaping makes the whole input one phrase; pass the common query instead.
        return self.tv.search(quoted(query), k=K, escape=False)

    def close(self) -> None:
        pass


class SqliteFts5:
    """The limit: one FTS5 table (the texts in its own content table, the value UNINDEXED),
    written and read straight through the stdlib driver."""

    def __init__(self, d: str) -> None:
        self.path = os.path.join(d, "text.db")
        self.conn = self._open()
        self.conn.execute(
            "CREATE VIRTUAL TABLE docs USING fts5(content, value UNINDEXED, "
            "tokenize='unicode61 remove_diacritics 2')"
        )

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def insert(self, docs: Docs) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO docs (content, value) VALUES (?, ?)", docs)
        self.conn.execute("COMMIT")

    def reopen(self) -> None:
        self.conn.close()
        self.conn = self._open()

    def search(self, query: str) -> List[Any]:
        return self.conn.execute(
            "SELECT rowid, -rank, value FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT ?",
            (quoted(query), K),
        ).fetchall()

    def close(self) -> None:
        self.conn.close()


TEXT_SYSTEMS: Dict[str, Callable[[str], Any]] = {
    "ambervault": AmbervaultText,
    "kohakuvault": KohakuText,
    "sqlite_fts5": SqliteFts5,
}


def text_insert(system: str) -> Callable[[str, int], TextResult]:
    def run(d: str, n: int) -> TextResult:
        docs = documents(n)
        s = TEXT_SYSTEMS[system](d)
        with Timer() as t:
            s.insert(docs)
        s.close()
        return t.seconds, n

    return run


def text_search(system: str) -> Callable[[str, int], TextResult]:
    def run(d: str, n: int) -> TextResult:
        s = TEXT_SYSTEMS[system](d)
        s.insert(documents(n))
        s.reopen()
        qs = queries()
        for q in qs[:100]:  # warm the page cache and the statements, as a running service has
            s.search(q)
        found = 0
        with Timer() as t:
            for q in qs:
                found += len(s.search(q))
        s.close()
        assert found > len(qs)  # the queries find documents (about 4 per query)
        return t.seconds, len(qs)

    return run


TEXT_WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Any], Tuple[int, int], str]] = {
    "text_insert_many": (list(TEXT_SYSTEMS), text_insert, (20_000, 100_000), "documents"),
    "text_search": (list(TEXT_SYSTEMS), text_search, (20_000, 100_000), "queries"),
}
TEXT_SIZE_LABELS = {
    "text_insert_many": "index {n:,} short documents (6-19 Zipf words) in one insert_many",
    "text_search": f"{QUERIES:,} queries of 1-3 words one by one, k={K}, on {{n:,}} documents",
}
TEXT_NOTES = {
    "ambervault (text)": "TextVault (unicode61, one `content` column): `insert_many` (one transaction: "
    "each row with its exact-text key, and the FTS5 external-content index); `search(query, k=10)` "
    "(plain words, each quoted, all required), values decoded",
    "kohakuvault (text)": "kohakuvault 1.1.0 TextVault: `insert_many` (one transaction); "
    "`search(quoted_words, k=10, escape=False)`, the same FTS5 query as the others (its default "
    "escaping would search the whole input as one phrase)",
    "sqlite_fts5": "stdlib sqlite3, one FTS5 table `fts5(content, value UNINDEXED)` (texts in FTS5's "
    "own content table), WAL+NORMAL; `executemany` in one transaction; `SELECT rowid, -rank, value "
    "... MATCH ? ORDER BY rank LIMIT 10`",
}
