"""Full-text and hybrid search in one file: recipe notes in a TextVault (Porter stemming, a
metadata filter, snippets, paging), their audio in a KVault on the same file (one transaction
for both), and a VectorKVault of embeddings fused with the word search by reciprocal rank
fusion.

Run: python examples/text_search.py
"""

from __future__ import annotations

import numpy as np

from ambervault import KVault, TextVault, VectorKVault, hybrid_search

NOTES = [
    ("Tomato soup", "Roast the tomatoes, then simmer them with garlic and blend.", "soup"),
    ("Garlic bread", "Butter, crushed garlic and parsley on a baguette, baked until golden.", "bread"),
    ("Lentil soup", "Simmer red lentils with cumin and a squeeze of lemon.", "soup"),
    ("Banana bread", "Mashed bananas, flour and eggs; bake for an hour.", "bread"),
    ("Pho", "A clear beef broth simmered for hours, with rice noodles and herbs.", "soup"),
]


def embedding(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A stand-in for a sentence embedding: one direction per kind of dish, plus noise."""
    base = np.zeros(16, np.float32)
    base[["soup", "bread"].index(kind)] = 1.0
    return base + rng.normal(scale=0.2, size=16).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(0)
    with KVault("recipes.db") as media:
        notes = TextVault(media, table="notes", columns=["title", "body"], tokenizer="porter")
        vectors = VectorKVault(media, table="note_vectors", dimensions=16, metric="cosine")
        for title, body, kind in NOTES:
            # The note, its audio and its embedding commit together, or not at all.
            with media.transaction():
                note_id = notes.insert({"title": title, "body": body}, {"title": title}, {"kind": kind})
                media[f"audio/{note_id}.ogg"] = b"OggS" + bytes(64)
                assert vectors.insert(embedding(rng, kind), {"title": title}) == note_id  # ids in step

        # Plain words: "simmering" finds "simmer"/"simmered" (Porter stems), in any column.
        hits = notes.search("simmering", k=10)
        print("simmering:", [value["title"] for _, _, value in hits])
        assert {value["title"] for _, _, value in hits} == {"Tomato soup", "Lentil soup", "Pho"}

        # Restricted to a column and to metadata; with a highlighted snippet.
        for _, score, snippet, value in notes.search_with_snippets(
            "garlic", snippet_column="body", snippet_tokens=6, where={"kind": "bread"}
        ):
            print(f"{value['title']}: {snippet} ({score:.2f})")
        assert [v["title"] for *_, v in notes.search("garlic", column="title")] == ["Garlic bread"]

        # Whatever the user types is only words: quotes, AND, *, colons never raise.
        assert notes.search('bread" AND title:* (', k=3) == []
        # FTS5 syntax on request.
        assert len(notes.search("(soup OR broth) NOT lentil*", escape=False)) == 2

        # Pages of two.
        first, second = notes.search("the", k=2), notes.search("the", k=2, offset=2)
        assert not {h[0] for h in first} & {h[0] for h in second}

        # Hybrid: words and an embedding of "a warm soup", fused by reciprocal rank fusion.
        fused = hybrid_search(notes, vectors, "simmer broth", embedding(rng, "soup"), k=3)
        print("hybrid:", [(hit.value["title"], hit.text_rank, hit.vector_rank) for hit in fused])
        assert fused[0].value["title"] == "Pho"  # first by words, near the top by meaning

        assert media.check() == []
    print("done")


if __name__ == "__main__":
    main()
