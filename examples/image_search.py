"""Images with embeddings in one file: the JPEG bytes in a KVault, their embeddings in a
VectorKVault on the same file (one transaction for both), searched with a metadata filter.

Run: python examples/image_search.py
"""

from __future__ import annotations

import numpy as np

from ambervault import KVault, VectorKVault


def fake_embedding(rng: np.random.Generator, topic: int) -> np.ndarray:
    """A stand-in for a CLIP embedding: one direction per topic, plus noise."""
    base = np.zeros(64, np.float32)
    base[topic] = 1.0
    return base + rng.normal(scale=0.05, size=64).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(0)
    topics = ["cat", "dog", "boat"]
    with KVault("images.db") as media:
        index = VectorKVault(media, table="clip", dimensions=64, metric="cosine")
        for i in range(300):
            topic = i % 3
            key = f"img/{i:04d}.jpg"
            # The image and its embedding commit together, or not at all.
            with media.transaction():
                media[key] = b"\xff\xd8\xff\xe0" + bytes(100)  # a JPEG's first bytes
                index.upsert(
                    key,
                    fake_embedding(rng, topic),
                    {"caption": f"a {topics[topic]}"},
                    metadata={"topic": topics[topic], "year": 2020 + i % 5},
                )

        query = fake_embedding(rng, 1)  # "something like a dog"
        hits = index.search(query, k=3)
        print("nearest:", [(key, round(distance, 3), value["caption"]) for key, distance, value in hits])
        assert all(value["caption"] == "a dog" for _, _, value in hits)

        # Only boats from 2021 or 2022, nearest to the dog query: exactly the best of those.
        boats = index.search(query, k=5, where={"topic": "boat", "year": [2021, 2022]}, with_metadata=True)
        assert boats and all(meta["topic"] == "boat" and meta["year"] in (2021, 2022) for *_, meta in boats)
        print("boats:", [key for key, *_ in boats])

        # Many queries at once (numpy in, numpy out), without the GIL, on every core.
        ids, distances = index.search_many(np.stack([fake_embedding(rng, t) for t in range(3)]), k=2)
        print("batch:", ids.shape, distances.dtype)

        # The image bytes are a key away.
        first_key = hits[0][0]
        assert media[first_key].startswith(b"\xff\xd8")
        print(index.info()["count"], "embeddings,", len(media), "images")
        index.close()
    print("done")


if __name__ == "__main__":
    main()
