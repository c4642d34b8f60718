"""JSON documents: json_get / json_set / json_delete on dict and list values by path (members,
quoted names, indexes, negative indexes, [len] to append, missing levels created), the errors of
each rule, malformed paths refused with nothing written, versions bumped by every change, the
document's encoding and expiry kept, and two processes changing one document without losing
either's changes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ambervault import InvalidArgument, Json, KVault, NotFound
from ambervault.json_docs import parse_path


@pytest.fixture
def kv():
    v = KVault(":memory:")
    yield v
    v.close()


def test_paths_parse():
    assert parse_path("$") == ()
    assert parse_path("$.a.b_c-d[0][-12]") == ("a", "b_c-d", 0, -12)
    assert parse_path('$["key with spaces"]["q\\"uote"]') == ("key with spaces", 'q"uote')
    assert parse_path("$['it\\'s'].x") == ("it's", "x")
    assert parse_path('$["\\u00e9"]') == ("é",)
    assert parse_path("$.é") == ("é",)


@pytest.mark.parametrize(
    "path, why",
    [
        ("a.b", "starts with"),
        ("", "starts with"),
        ("$.", "member name"),
        ("$..a", "recursive"),
        ("$.*", "wildcard"),
        ("$[*]", "wildcard"),
        ("$[1:2]", "slices"),
        ("$[?(@.x)]", "filters"),
        ("$[01]", "integer index"),
        ("$[+1]", "integer index"),
        ("$[ 1]", "integer index"),
        ("$[1", "expected ']'"),
        ("$[", "unclosed"),
        ('$["a', "unterminated"),
        ('$["a"', "expected ']'"),
        ('$["\\x"]', "bad JSON string"),
        ("$.a b", "unexpected"),
        ("$a", "unexpected"),
    ],
)
def test_malformed_paths_are_refused_and_change_nothing(kv, path, why):
    kv["doc"] = {"a": {"b": 1}}
    for call in (
        lambda: kv.json_get("doc", path),
        lambda: kv.json_set("doc", path, 2),
        lambda: kv.json_delete("doc", path),
    ):
        with pytest.raises(InvalidArgument, match=why):
            call()
    assert kv["doc"] == {"a": {"b": 1}} and kv.version("doc") == 1


def test_non_str_paths_are_type_errors(kv):
    kv["doc"] = {}
    with pytest.raises(TypeError):
        kv.json_get("doc", 0)
    with pytest.raises(TypeError):
        kv.json_set("doc", ["a"], 1)


def test_get(kv):
    kv["doc"] = {"a": {"b": [10, 20, {"c": None}]}, "x y": "spaced"}
    assert kv.json_get("doc") == kv["doc"]
    assert kv.json_get("doc", "$.a.b[0]") == 10
    assert kv.json_get("doc", "$.a.b[-1].c") is None
    assert kv.json_get("doc", '$["x y"]') == "spaced"
    with pytest.raises(NotFound, match=r"\$\.a\.zz"):
        kv.json_get("doc", "$.a.zz.deeper")
    with pytest.raises(NotFound, match=r"\$\.a\.b\[3\]"):
        kv.json_get("doc", "$.a.b[3]")
    with pytest.raises(NotFound):
        kv.json_get("doc", "$.a.b[-4]")
    with pytest.raises(NotFound):
        kv.json_get("missing", "$.a")
    assert kv.json_get("doc", "$.a.zz", default="d") == "d"
    assert kv.json_get("missing", "$", default=0) == 0
    with pytest.raises(TypeError, match="not a list"):
        kv.json_get("doc", "$.a[0]")
    with pytest.raises(TypeError, match="not an object"):
        kv.json_get("doc", "$.a.b.c")
    with pytest.raises(TypeError, match="an int, not an object"):
        kv.json_get("doc", "$.a.b[0].c", default=None)  # a type mismatch is not "missing"


def test_set_creates_levels_and_bumps_versions(kv):
    assert kv.json_set("doc", "$.user.name", "ada") == 1
    assert kv.json_set("doc", "$.user.langs", []) == 2
    assert kv.json_set("doc", "$.user.langs[0]", "en") == 3  # [len] appends
    assert kv.json_set("doc", "$.user.langs[1]", "fr") == 4
    assert kv.json_set("doc", "$.user.langs[-1]", "de") == 5
    assert kv.json_set("doc", '$["odd key"].n', 1) == 6
    assert kv.json_set("doc", "$.grid[0][0]", 1) == 7  # a missing list level is created by [0]
    assert kv["doc"] == {
        "user": {"name": "ada", "langs": ["en", "de"]},
        "odd key": {"n": 1},
        "grid": [[1]],
    }
    assert kv.version("doc") == 7
    assert kv.json_set("doc", "$", [1]) == 8 and kv["doc"] == [1]


def test_set_refusals_change_nothing(kv):
    kv["doc"] = {"l": [1, 2], "s": "text"}
    for error, path in [
        (NotFound, "$.l[3]"),  # beyond [len]
        (NotFound, "$.l[-3]"),
        (NotFound, "$.new[1]"),  # a created list starts empty: only [0]
        (TypeError, "$.s.x"),
        (TypeError, "$.s[0]"),
        (TypeError, "$.l.x"),
        (TypeError, "$[0]"),
    ]:
        with pytest.raises(error):
            kv.json_set("doc", path, 9)
    with pytest.raises(TypeError):
        kv.json_set("doc", "$.x", object())
    kv["raw"] = b"bytes"
    with pytest.raises(TypeError, match="bytes, not an object"):
        kv.json_set("raw", "$.x", 1)
    assert kv["doc"] == {"l": [1, 2], "s": "text"} and kv.version("doc") == 1
    assert kv["raw"] == b"bytes" and kv.version("raw") == 1


def test_delete(kv):
    kv["doc"] = {"a": {"b": 1, "c": 2}, "l": [1, 2, 3]}
    assert kv.json_delete("doc", "$.a.b") == 2
    assert kv.json_delete("doc", "$.l[-1]") == 3
    assert kv.json_delete("doc", "$.l[0]") == 4
    assert kv["doc"] == {"a": {"c": 2}, "l": [2]}
    for path in ("$.a.b", "$.l[1]", "$.zz.y"):
        with pytest.raises(NotFound):
            kv.json_delete("doc", path)
    with pytest.raises(NotFound):
        kv.json_delete("missing", "$.a")
    assert kv.version("doc") == 4
    assert kv.json_delete("doc", "$") is None and "doc" not in kv
    with pytest.raises(NotFound):
        kv.json_delete("doc", "$")


def test_tuples_inside_documents_stay_tuples(kv):
    kv["doc"] = {"t": (1, 2, 3)}
    kv.json_set("doc", "$.t[1]", 9)
    kv.json_delete("doc", "$.t[0]")
    kv.json_set("doc", "$.t[2]", 4)
    assert kv["doc"] == {"t": (9, 3, 4)}


def test_encoding_and_expiry_are_kept():
    now = [1000.0]
    kv = KVault(":memory:", clock=lambda: now[0])
    kv.put("j", Json({"a": 1}), ttl=60)
    expires = kv.expires_at("j")
    now[0] += 10
    kv.json_set("j", "$.b", [1])
    assert kv.info("j")["encoding"] == "json" and kv["j"] == {"a": 1, "b": [1]}
    assert kv.expires_at("j") == expires
    kv.json_set("fresh", "$.a", 1)
    assert kv.info("fresh")["encoding"] == "msgpack" and kv.expires_at("fresh") is None


def test_two_processes_set_different_paths_of_one_document(db_path):
    with KVault(db_path) as kv:
        kv["doc"] = {"left": {}, "right": {}}
    code = textwrap.dedent(
        """
        import sys
        from ambervault import KVault
        kv = KVault(sys.argv[1], retries=50)
        side = sys.argv[2]
        for i in range(100):
            kv.json_set("doc", f"$.{side}.k{i}", i)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db_path), side], stderr=subprocess.PIPE)
        for side in ("left", "right")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with KVault(db_path) as kv:
        doc = kv["doc"]
        assert doc["left"] == {f"k{i}": i for i in range(100)}
        assert doc["right"] == {f"k{i}": i for i in range(100)}
        assert kv.version("doc") == 201
