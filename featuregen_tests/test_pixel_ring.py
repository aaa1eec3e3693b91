"""PixelRing: shared-memory slots between loader workers and the model's process."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from featuregen_assets.core.vision import pixel_ring
from featuregen_assets.core.vision.pixel_ring import PixelRing, put_pixels, read_chunks, ring_slots


class _Numbered(Dataset):
    """Item i writes an image filled with i % 251 into its slot; every 5th item is skipped."""

    def __init__(self, n: int, slots: torch.Tensor):
        self.n, self.slots = n, slots

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int | None:
        if i % 5 == 4:
            return None
        put_pixels(self.slots, i, np.full(self.slots.shape[1:], i % 251, np.uint8))
        return i


def _in_ring(items):
    return ([i for i in items if i is not None],)


def test_chunks_come_back_in_order_with_their_own_pixels() -> None:
    ring = PixelRing(ring_slots(4, 8, 2 * 2), (3, 3, 3), torch.device("cpu"))
    loader = DataLoader(
        _Numbered(300, ring.pixels),
        batch_size=4,
        num_workers=2,
        collate_fn=_in_ring,
        prefetch_factor=2,
    )
    seen = []
    for indices, pixels in read_chunks(loader, ring):
        assert pixels.shape == (len(indices), 3, 3, 3)
        assert [int(p[0, 0, 0]) for p in pixels] == [i % 251 for i in indices]
        seen += indices
    assert seen == [i for i in range(300) if i % 5 != 4]  # 300 items through 40 slots


def test_too_few_slots_for_the_loader_are_refused() -> None:
    ring = PixelRing(8, (2, 2, 3), torch.device("cpu"))
    loader = DataLoader(
        _Numbered(40, ring.pixels), batch_size=4, num_workers=2, collate_fn=_in_ring
    )
    with pytest.raises(ValueError, match="slots"):
        next(read_chunks(loader, ring))


def test_slots_larger_than_free_shared_memory_are_refused(monkeypatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pixel_ring.shutil, "disk_usage", lambda _: usage(64 << 20, 0, 64 << 20))
    with pytest.raises(RuntimeError, match="shared memory"):
        PixelRing(1440, (224, 224, 3), torch.device("cpu"))
