"""TextVault: tokenizers, plain-word escaping (fuzzed with FTS5 operators and quotes), raw FTS5
queries and their errors, filters, paging, snippets and highlights, exact-text access, typed
values, hybrid search against a hand-computed fusion, sharing a KVault's file and transactions,
bad input, and a writer process beside a searching one."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ambervault
from ambervault import (
    ClosedError,
    HybridHit,
    InvalidArgument,
    KVault,
    NotFound,
    TextVault,
    VectorKVault,
    hybrid_search,
)
from helpers import run_python


def ids(hits):
    return [hit[0] for hit in hits]


# -- tokenizers --------------------------------------------------------------------------------------
def test_unicode61_folds_case_and_diacritics(db_path):
    with TextVault(db_path) as tv:
        assert tv.tokenizer == "unicode61"
        a = tv.insert("Crème brûlée at the Café Zoë", 1)
        tv.insert("plain cafe", 2)
        assert ids(tv.search("creme BRULEE")) == [a]
        assert sorted(ids(tv.search("café"))) == [1, 2]
        assert ids(tv.search("zoe")) == [a]
        assert tv.search("cafes") == []  # no stemming here


def test_porter_stems_english_words(db_path):
    with TextVault(db_path, tokenizer="porter") as tv:
        a = tv.insert("The cats were running home", "a")
        tv.insert("A dog sleeps", "b")
        assert ids(tv.search("cat runs")) == [a]
        assert ids(tv.search("sleeping dogs")) == [2]
        assert tv.search("catalogue") == []


def test_trigram_finds_substrings_and_tolerates_typos(db_path):
    with TextVault(db_path, tokenizer="trigram") as tv:
        sub = tv.insert("a yellow submarine", "sub")
        tv.insert("submit the form", "form")
        tv.insert("marine biology", "bio")
        assert sorted(ids(tv.search("marin"))) == [sub, 3]
        assert ids(tv.search("ubmar")) == [sub]
        # A misspelt word is in no document, but the trigrams it shares rank the right one first.
        assert tv.search("submarnie") == []
        assert ids(tv.search("submarnie", mode="any"))[0] == sub
        assert ids(tv.search("Yelow submarin", mode="any"))[0] == sub


def test_reopening_keeps_columns_and_tokenizer_and_refuses_others(db_path):
    TextVault(db_path, columns=["title", "body"], tokenizer="porter").close()
    with TextVault(db_path) as tv:
        assert tv.columns == ["title", "body"] and tv.tokenizer == "porter"
    with pytest.raises(InvalidArgument, match="columns"):
        TextVault(db_path, columns=["title"])
    with pytest.raises(InvalidArgument, match="tokenizer"):
        TextVault(db_path, tokenizer="trigram")
    with pytest.raises(InvalidArgument, match="unknown tokenizer"):
        TextVault(db_path, table="other", tokenizer="snowball")
    for bad in (["a b"], [""], ["__value"], ["rank"], ["x", "X"], []):
        with pytest.raises(InvalidArgument):
            TextVault(db_path, table="other", columns=bad)
    with pytest.raises(TypeError):
        TextVault(db_path, table="other", columns="title")
    assert TextVault.tables(db_path) == ["text_vault"]


# -- escaping -----------------------------------------------------------------------------------------
OPERATORS = ['"', '""', "AND", "OR", "NOT", "NEAR", "NEAR(", ")", "(", "*", "^", "+", "-", ":", "title:"]
OPERATORS += ["{", "}", "{title body}:"]

words = st.one_of(
    st.sampled_from(OPERATORS),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.from_regex(r"[a-z]{1,6}", fullmatch=True),
)


@given(parts=st.lists(words, max_size=10), glue=st.sampled_from([" ", "", "  \t"]))
def test_plain_word_queries_never_fail_and_find_their_own_text(tmp_path_factory, parts, glue):
    path = tmp_path_factory.mktemp("fuzz") / "v.db"
    query = glue.join(parts)
    with TextVault(path, columns=["title", "body"]) as tv:
        doc = tv.insert({"title": query, "body": "x"}, b"")
        for mode in ("all", "any", "phrase"):
            for column in (None, "title", "body"):
                found = ids(tv.search(query, k=5, column=column, mode=mode))
                tv.search_with_snippets(query, column=column, mode=mode)
                assert tv.count_matches(query, column=column, escape=True, mode=mode) == len(found)
                if any(c.isalnum() for c in query) and column != "body":
                    # The document holds exactly these words, in this order.
                    assert found == [doc], (query, mode, column)


def test_kohakuvault_special_character_queries(db_path):
    with TextVault(db_path) as tv:
        texts = ["What is this?", "C++ programming guide", "Contact: test@email.com", "Price > 100"]
        for i, text in enumerate([*texts, 'He said "hi"']):
            tv.insert(text, i)
        for query, want in [
            ("What is this?", [0]),
            ("C++", [1]),
            ("test@email.com", [2]),
            ("Price > 100", [3]),
            ('"hi"', [4]),
            ('said "hi', [4]),
            ("title:Price", []),
            ("NEAR(what this)", []),
        ]:
            assert [hit[2] for hit in tv.search(query)] == want, query


@pytest.mark.parametrize(
    "query",
    ["(", "hello AND", '"unterminated', "nosuchcolumn: word", "NEAR(a b", "*", "a OR OR b", "^"],
)
def test_malformed_raw_queries_are_invalid_arguments(db_path, query):
    with TextVault(db_path) as tv:
        tv.insert("hello world", 1)
        with pytest.raises(InvalidArgument, match="malformed full-text query"):
            tv.search(query, escape=False)
        with pytest.raises(ValueError):
            tv.count_matches(query)
        with pytest.raises(InvalidArgument):
            tv.search_with_snippets(query, escape=False)
        assert len(tv) == 1


def test_raw_queries_use_fts5_syntax(db_path):
    with TextVault(db_path, columns=["title", "body"]) as tv:
        a = tv.insert({"title": "Python guide", "body": "learn programming basics"}, "a")
        b = tv.insert({"title": "Java guide", "body": "python comparison"}, "b")
        assert ids(tv.search("title:python", escape=False)) == [a]
        assert ids(tv.search("python NOT java", escape=False)) == [a]
        assert sorted(ids(tv.search("progr*", escape=False))) == [a]
        assert ids(tv.search("python", column="body")) == [b]
        assert tv.count_matches("guide") == 2 and tv.count_matches("guide", column="body") == 0
        with pytest.raises(InvalidArgument, match="not found"):
            tv.search("python", column="nope")
        with pytest.raises(InvalidArgument, match="mode"):
            tv.search("python", mode="fuzzy")


# -- filters, paging, snippets --------------------------------------------------------------------
def test_where_filters_and_offset_paging(db_path):
    with TextVault(db_path) as tv:
        for i in range(40):
            meta = {"lang": ["en", "de", "fr"][i % 3], "n": i, "flag": i % 2 == 0}
            tv.insert(("filler " * (i % 9)) + "apple " * (1 + i % 4), i, meta)
        full = tv.search("apple", k=100)
        assert len(full) == 40
        scores = [hit[1] for hit in full]
        assert scores == sorted(scores, reverse=True)
        paged = [hit for page in range(6) for hit in tv.search("apple", k=7, offset=7 * page)]
        assert paged == full
        en = tv.search("apple", k=100, where={"lang": "en"}, with_metadata=True)
        assert [hit[:3] for hit in en] == [hit for hit in full if hit[2] % 3 == 0]
        assert all(hit[3]["lang"] == "en" for hit in en)
        some = tv.search("apple", k=100, where={"lang": ["de", "fr"], "flag": True})
        assert sorted(hit[2] for hit in some) == [i for i in range(40) if i % 3 and i % 2 == 0]
        assert tv.count_matches("apple", where={"n": [1, 2, 99]}) == 2
        assert tv.search("apple", where={"missing": None}, k=100) == full
        assert tv.search("apple", k=3, offset=100) == []
        with pytest.raises(InvalidArgument):
            tv.search("apple", offset=-1)
        with pytest.raises(TypeError):
            tv.search("apple", where={"lang": object()})


def test_snippets_highlights_and_texts(db_path):
    with TextVault(db_path, columns=["title", "body"]) as tv:
        body = "It was a long day. " * 5 + "Then the red fox jumped. " + "Quiet again. " * 5
        doc = tv.insert({"title": "A fox story", "body": body}, {"k": 1})
        [(hit_id, score, snippet, value)] = tv.search_with_snippets(
            "fox", snippet_column="body", snippet_tokens=6, highlight_start="<'b'>", highlight_end="</b>"
        )
        assert hit_id == doc and value == {"k": 1} and score > 0
        assert "<'b'>fox</b>" in snippet and snippet.startswith("...") and len(snippet) < len(body)
        # Default column: the searched one, else the first.
        assert tv.search_with_snippets("fox", column="body")[0][2].count("**fox**") == 1
        assert tv.search_with_snippets("fox")[0][2] == "A **fox** story"
        [(_, _, texts, _)] = tv.search_with_highlights("red fox", highlight_start="[", highlight_end="]")
        assert texts["title"] == "A [fox] story" and "the [red] [fox] jumped" in texts["body"]
        [(_, _, texts, _)] = tv.search_with_text("fox")
        assert texts == {"title": "A fox story", "body": body}
        for bad in (0, 65):
            with pytest.raises(InvalidArgument):
                tv.search_with_snippets("fox", snippet_tokens=bad)
        with pytest.raises(InvalidArgument):
            tv.search_with_snippets("fox", snippet_column="nope")


# -- documents --------------------------------------------------------------------------------------
def test_crud_exact_text_access_and_typed_values(db_path):
    with TextVault(db_path) as tv:
        first = tv.insert("key one", {"n": 1}, {"tag": "a"})
        tv["key two"] = np.arange(3)
        tv["key one"] = "replaced"  # the document with exactly this text keeps its id
        assert len(tv) == 2 and tv.get_by_id(first) == ("key one", "replaced")
        assert tv.metadata(first) is None
        assert "key one" in tv and "key" not in tv and first in tv and 999 not in tv
        np.testing.assert_array_equal(tv["key two"], np.arange(3))
        with pytest.raises(KeyError):
            tv["key"]
        with pytest.raises(NotFound):
            tv.get("key")
        tv.update(first, texts="moved text", metadata={"tag": "b"})
        assert ids(tv.search("moved")) == [first] and tv.search("one") == []
        assert tv.metadata(first) == {"tag": "b"}
        with pytest.raises(NotFound):
            tv.update(999, value=1)
        with pytest.raises(InvalidArgument):
            tv.update(first)
        del tv["key two"]
        with pytest.raises(KeyError):
            del tv["key two"]
        assert tv.keys() == [first] and list(tv) == [first]
        assert tv.delete(first) and not tv.delete(first)
        info = {"table": "text_vault", "columns": ["content"], "tokenizer": "unicode61", "count": 0}
        assert tv.info() == info
        ids_ = tv.insert_many([(f"doc {i}", i) for i in range(25)])
        assert tv.keys(limit=10, offset=20) == ids_[20:]
        assert tv.delete_many(ids_[:5]) == 5 and tv.clear() == 20 and len(tv) == 0
    with KVault(db_path) as kv:
        assert kv.check() == []
    tv.close()
    with pytest.raises(ClosedError):
        tv.search("x")


def test_multi_column_documents(db_path):
    with TextVault(db_path, columns=["title", "body"]) as tv:
        doc = tv.insert({"title": "T", "body": "B"}, b"v")
        assert tv.get({"title": "T", "body": "B"}) == b"v"
        assert tv.get_by_id(doc) == ({"title": "T", "body": "B"}, b"v")
        with pytest.raises(InvalidArgument, match="dict"):
            tv.insert("plain string", b"v")
        with pytest.raises(InvalidArgument, match="missing column"):
            tv.insert({"title": "T"}, b"v")
        with pytest.raises(InvalidArgument, match="unknown column"):
            tv.insert({"title": "T", "body": "B", "extra": "x"}, b"v")
        with pytest.raises(InvalidArgument):
            tv.get("T")


@pytest.mark.parametrize(
    "bad,error",
    [
        (("missing value",), InvalidArgument),
        ("not a pair", TypeError),
        (({"wrong": "column"}, b"v"), InvalidArgument),
        ((123, b"v"), TypeError),
        (("text", object()), TypeError),
        (("text", b"v", {"x": float("nan")}), TypeError),
        (("text", b"v", "not a dict"), TypeError),
    ],
)
def test_bad_items_insert_nothing(db_path, bad, error):
    with TextVault(db_path) as tv:
        tv.insert("existing row", b"v")
        with pytest.raises(error, match="item 1"):
            tv.insert_many([("valid row", b"v"), bad])
        assert len(tv) == 1 and tv.search("valid") == []
        tv.disable_auto_pack()
        with pytest.raises(TypeError):
            tv.insert_many([("bytes row", b"ok"), ("object row", {"not": "bytes"})])
        with pytest.raises(TypeError):
            tv.update(1, value={"not": "bytes"})
        assert len(tv) == 1 and tv.get("existing row") == b"v"


# -- files and transactions ------------------------------------------------------------------------
def test_shares_a_kvault_file_and_its_transactions(db_path):
    with KVault(db_path) as kv:
        tv = TextVault(kv)
        with pytest.raises(RuntimeError):
            with kv.transaction():
                kv["photo"] = b"jpeg"
                tv.insert_many([("a photo of a cat", "photo"), ("a dog", "dog")])
                assert [hit[2] for hit in tv.search("cat")] == ["photo"]
                raise RuntimeError("roll back all of it")
        assert "photo" not in kv and len(tv) == 0 and tv.search("cat") == []
        with tv.transaction():
            kv["photo"] = b"jpeg"
            tv.insert("a photo of a cat", "photo")
        assert kv["photo"] == b"jpeg" and tv["a photo of a cat"] == "photo"
        assert kv.check() == []
        assert TextVault.tables(kv) == ["text_vault"]
        assert ambervault.drop_text_table(kv, "text_vault")
        assert TextVault.tables(kv) == []
        with pytest.raises(InvalidArgument, match="dropped"):
            tv.search("cat")


def test_check_reports_an_index_out_of_step_and_rebuild_repairs_it(db_path):
    import sqlite3

    with TextVault(db_path) as tv:
        tv.insert_many([(f"note {i}", i) for i in range(10)])
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE text_vault__text SET content = 'changed behind its back' WHERE __id = 3")
    conn.commit()
    conn.close()
    with TextVault(db_path) as tv:
        problems = tv._file.check()
        assert any("does not match" in p or "exact-text key" in p for p in problems), problems
        tv.rebuild_index()
        assert ids(tv.search("behind")) == [3]
        # The exact-text key still disagrees: only an update through the vault sets it.
        tv.update(3, texts="changed behind its back")
        assert tv._file.check() == [] and tv["changed behind its back"] == 2


# -- hybrid search ------------------------------------------------------------------------------------
def test_hybrid_search_matches_a_hand_computed_fusion(db_path):
    with TextVault(db_path) as tv:
        vk = VectorKVault(tv, dimensions=2, metric="l2")
        # Text ranks for "apple": denser and shorter documents first.
        texts = ["apple apple apple", "apple apple pie crust", "apple and a long tail of other words", "pear"]
        vectors = [[3, 0], [0, 0], [9, 9], [1, 0]]
        for i, (words, vec) in enumerate(zip(texts, vectors)):
            assert tv.insert(words, f"t{i}") == vk.insert(vec, f"v{i}") == i + 1
        assert ids(tv.search("apple")) == [1, 2, 3]
        assert ids(vk.search([0, 0], k=4)) == [2, 4, 1, 3]
        # By hand, rrf_k = 60: each list contributes 1 / (60 + rank).
        expected = {
            1: 1 / 61 + 1 / 63,  # text 1st, vector 3rd
            2: 1 / 62 + 1 / 61,  # text 2nd, vector 1st
            3: 1 / 63 + 1 / 64,  # text 3rd, vector 4th
            4: 1 / 62,  # vector 2nd only
        }
        hits = hybrid_search(tv, vk, "apple", [0, 0], k=4)
        assert [hit.id for hit in hits] == [2, 1, 3, 4]
        assert all(isinstance(hit, HybridHit) for hit in hits)
        for hit in hits:
            assert hit.score == pytest.approx(expected[hit.id], rel=1e-12)
        assert [(hit.text_rank, hit.vector_rank) for hit in hits] == [(2, 1), (1, 3), (3, 4), (None, 2)]
        assert [hit.value for hit in hits] == ["t1", "t0", "t2", "v3"]
        # Weights and rrf_k enter the formula.
        weighted = hybrid_search(tv, vk, "apple", [0, 0], k=2, rrf_k=1, text_weight=3.0)
        assert [hit.id for hit in weighted] == [1, 2]
        assert weighted[0].score == pytest.approx(3 / 2 + 1 / 4)
        assert weighted[1].score == pytest.approx(3 / 3 + 1 / 2)
        # Fewer candidates: items beyond them count for nothing.
        short = hybrid_search(tv, vk, "apple", [0, 0], k=1, candidates=1)
        assert [(hit.id, hit.text_rank, hit.vector_rank) for hit in short] == [(1, 1, None)]
        with pytest.raises(InvalidArgument):
            hybrid_search(tv, vk, "apple", [0, 0], k=3, candidates=2)
        with pytest.raises(InvalidArgument):
            hybrid_search(tv, vk, "apple", [0, 0], rrf_k=-1)


def test_hybrid_search_by_a_metadata_key_and_filter(db_path):
    with KVault(db_path) as kv:
        tv = TextVault(kv)
        vk = VectorKVault(kv, dimensions=2, metric="l2")
        # Different insertion orders, so ids disagree; the "doc" field ties the items together.
        for doc, words in [("b", "red bike"), ("a", "red apple pie"), ("c", "green apple")]:
            tv.insert(words, words, {"doc": doc, "lang": "en"})
        for doc, vec in [("c", [0, 0]), ("a", [1, 1]), ("b", [5, 5])]:
            vk.insert(vec, doc, {"doc": doc, "lang": "en"})
        vk.insert([0, 0], "unkeyed")  # no "doc": left out of the fusion
        hits = hybrid_search(tv, vk, "red", [0, 0], k=3, key="doc")
        # b: 1/61 + 1/63 = 0.032266 > a: 1/62 + 1/62 = 0.032258 > c: 1/61.
        assert [(hit.id, hit.text_rank, hit.vector_rank) for hit in hits] == [
            ("b", 1, 3),
            ("a", 2, 2),
            ("c", None, 1),
        ]
        filtered = hybrid_search(tv, vk, "apple", [0, 0], k=5, key="doc", where={"doc": ["a", "b"]})
        assert {hit.id for hit in filtered} == {"a", "b"}


# -- processes -----------------------------------------------------------------------------------------
def test_a_writer_process_and_a_searching_process(db_path):
    """Batches are atomic for a reader in another process: a batch's marker word is found in
    all of its documents or in none, and the count never goes down."""
    TextVault(db_path).close()
    writer = """
import sys
from ambervault import TextVault
with TextVault(sys.argv[1]) as tv:
    for b in range(40):
        tv.insert_many([(f"batch{b} shared word{i}", b) for i in range(25)])
"""
    proc = subprocess.Popen([sys.executable, "-c", writer, str(db_path)])
    seen = 0
    with TextVault(db_path) as tv:
        while proc.poll() is None:
            count = tv.count_matches("shared")
            assert count % 25 == 0 and count >= seen
            seen = count
            for hit in tv.search("shared", k=5):
                assert tv.count_matches(f"batch{hit[2]}") == 25
        assert proc.wait() == 0
        assert len(tv) == 1000 and tv.count_matches("shared") == 1000
    result = run_python(
        """
import sys
from ambervault import KVault
with KVault(sys.argv[1]) as kv:
    assert kv.check() == [], kv.check()
""",
        str(db_path),
    )
    assert result.returncode == 0, result.stderr
