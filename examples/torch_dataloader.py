"""Training-style reads: a PyTorch DataLoader with 4 worker processes over one vault file.

The samples (numpy images) live in a KVault; ``ambervault.KeyDataset`` turns a list of its keys
into a map-style dataset. Each DataLoader worker opens its own handle on the file at its first
read, whether the workers are forked (Linux's default) or spawned, and a batch is read in one
round trip. Without PyTorch installed, the same dataset is read by a ``multiprocessing`` pool
of 4 workers instead. Run: ``python examples/torch_dataloader.py``.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

import ambervault

SAMPLES = 512
WORKERS = 4
SHAPE = (3, 64, 64)


def image(i: int) -> np.ndarray:
    """Sample ``i``: an image whose pixels all hold ``i % 251``."""
    return np.full(SHAPE, i % 251, dtype=np.uint8)


def scaled(pixels: np.ndarray) -> np.ndarray:
    """The transform run in the workers: pixels as float32 in [0, 1]. A module-level function,
    so that it pickles for spawned workers."""
    return pixels.astype(np.float32) / 255.0


def with_torch(torch: Any, dataset: ambervault.KeyDataset) -> None:
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, num_workers=WORKERS)
    seen = 0
    t0 = time.perf_counter()
    for _epoch in range(2):
        for batch in loader:  # a float32 tensor of shape (32, 3, 64, 64)
            assert tuple(batch.shape[1:]) == SHAPE and batch.dtype == torch.float32
            seen += len(batch)
    dt = time.perf_counter() - t0
    assert seen == 2 * SAMPLES
    print(f"torch DataLoader, {WORKERS} workers: {seen} samples in 2 epochs, {seen / dt:,.0f} samples/s")


def mean_pixel(i: int) -> float:
    assert _dataset is not None
    return float(_dataset[i].mean())


_dataset: Optional[ambervault.KeyDataset] = None


def set_dataset(dataset: ambervault.KeyDataset) -> None:
    global _dataset
    _dataset = dataset


def without_torch(dataset: ambervault.KeyDataset) -> None:
    print("PyTorch is not installed: reading the same dataset with a multiprocessing pool instead")
    with mp.get_context("spawn").Pool(WORKERS, initializer=set_dataset, initargs=(dataset,)) as pool:
        means: List[float] = pool.map(mean_pixel, range(SAMPLES), chunksize=16)
    expected = [(i % 251) / 255.0 for i in range(SAMPLES)]
    assert np.allclose(means, expected), "every worker read the right sample"
    print(f"{WORKERS} spawned workers read {len(means)} samples")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-loader-") as tmp:
        path = str(Path(tmp) / "images.db")
        with ambervault.KVault(path) as vault:
            vault.update((f"img:{i:05d}", image(i)) for i in range(SAMPLES))
            vault["meta"] = {"samples": SAMPLES, "shape": list(SHAPE)}
            # The keys are listed once, here; workers receive them with the dataset.
            dataset = ambervault.KeyDataset(vault, vault.keys(prefix="img:"), transform=scaled)
            assert len(dataset) == SAMPLES and np.allclose(dataset[7], 7 / 255.0)
            try:
                torch = importlib.import_module("torch")
            except ImportError:
                without_torch(dataset)
            else:
                with_torch(torch, dataset)
    print("done")


if __name__ == "__main__":
    main()
