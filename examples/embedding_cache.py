"""An embedding cache with a byte limit: texts map to their embeddings, computed once; the
least recently used embeddings are evicted when the cache is full; the same text stored under
two names costs its bytes once; results of a slow function are memoized.

Run: python examples/embedding_cache.py
"""

from __future__ import annotations

import hashlib

import numpy as np

from ambervault import KVault

calls = 0


def embed(text: str) -> np.ndarray:
    """A stand-in for a model call: deterministic, 384 float32 (1.5 KiB)."""
    global calls
    calls += 1
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(384).astype(np.float32)


def main() -> None:
    # 64 KiB of embeddings at most: about 40 of them. The policy is stored in the file.
    with KVault("embeddings.db", max_bytes=64 << 10, eviction="least-recently-used", dedup="all") as cache:

        @cache.memoize()
        def cached_embed(text: str) -> np.ndarray:
            return embed(text)

        # Captions drawn with a skewed (Zipf) popularity, as real lookups are.
        rng = np.random.default_rng(1)
        texts = [f"caption {n % 500}" for n in rng.zipf(1.5, 300)]
        hot = ["a photo of a cat", "a photo of a dog"]
        for text in texts:
            vector = cached_embed(text)
            assert vector.shape == (384,)
            for h in hot:  # read all the time: never the least recently used
                cached_embed(h)
        stats = cache.stats()
        print(
            f"{calls} model calls for {len(texts) + 2 * len(texts)} lookups; "
            f"{stats['keys']} cached, {stats['stored_bytes']} of {stats['max_bytes']} bytes, "
            f"{stats['evictions']} evictions, hit ratio {stats['hit_ratio']:.2f}"
        )
        assert stats["stored_bytes"] <= 64 << 10
        assert all(cached_embed.cache_key(h) in cache for h in hot)

        # Deduplication of every value: two names, one copy of the bytes.
        cache["alias/cat"] = cache["plain/cat"] = embed("a photo of a cat").tobytes()
        health = cache.get_health()
        print("health:", health)
        assert health["total_keys"] > health["total_objects"]

        # Entries not used for an hour can be dropped on demand (or on a schedule with
        # KVault(..., auto_prune=seconds) for expired ones).
        print("pruned:", cache.prune(max_idle=3600))
    print("done")


if __name__ == "__main__":
    main()
