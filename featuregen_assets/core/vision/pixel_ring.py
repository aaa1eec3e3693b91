"""Shared-memory slots that loader workers decode into, so only indices cross processes.

A DataLoader that returns pixel tensors moves each chunk through a fresh shared-memory
segment: the main process maps it, faults its pages in and unmaps it again, about as much
main-process work per image as the rest of the pipeline together. Here workers write each
image into slot ``index % slots`` of one segment made before they start, and hand back only
indices. On a GPU the segment is page-locked once, so a chunk goes to the device as one
asynchronous copy straight from the slots. A JPEG left encoded for the GPU's decoder travels
the same way: its bytes in its slot (`put_bytes`), copied out on arrival (`PixelRing.bytes`).

Slots are reused safely: a DataLoader has at most ``prefetch_factor × num_workers`` chunks
dispatched beyond the last one it returned (the chunk of sequential items it dispatches
next is known), and before each step the reader waits until the copies that read the
slots of that chunk have finished.
"""

from __future__ import annotations

import logging
import shutil
from collections import deque
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

SHARED_MEMORY = "/dev/shm"


def ring_slots(chunk: int, batch_size: int, in_flight_chunks: int) -> int:
    """Slots for ``in_flight_chunks`` dispatched chunks plus two model batches being copied."""
    per_batch = -(-batch_size // chunk)
    return chunk * (in_flight_chunks + 2 * per_batch + 2)


def read_chunks(loader: DataLoader, ring: PixelRing) -> Iterator[tuple]:
    """Run ``loader`` over ``ring``: yields (indices, their pixels on the ring's device or
    None, *the rest of the chunk) for chunks collated as (indices in the ring, *rest).

    The loader must take its items in order, ``loader.batch_size`` at a time.
    """
    chunk = loader.batch_size
    in_flight = (loader.prefetch_factor or 0) * loader.num_workers
    if len(ring) % chunk or len(ring) < (in_flight + 1) * chunk:
        raise ValueError(f"{len(ring)} slots do not fit chunks of {chunk}, {in_flight} ahead")
    chunks = iter(loader)  # starts the workers: page-lock the slots after the fork
    ring.page_lock()
    try:
        for number in range(len(loader)):
            # this step dispatches chunk number + in_flight: its slots must have been read
            ring.wait_until_free(below=(number + in_flight + 1) * chunk - len(ring))
            in_ring, *rest = next(chunks)
            yield in_ring, ring.read(in_ring) if in_ring else None, *rest
    finally:
        del chunks
        ring.close()


class PixelRing:
    """``slots`` uint8 images of one ``shape`` in shared memory, read onto ``device``."""

    def __init__(self, slots: int, shape: tuple[int, ...], device: torch.device):
        _check_shared_memory(slots * int(np.prod(shape)), slots)
        self.pixels = torch.empty((slots, *shape), dtype=torch.uint8).share_memory_()
        self.device = device
        self._copies: deque[tuple[int, torch.cuda.Event]] = deque()  # (first index, done)
        self._locked = False

    def __len__(self) -> int:
        return len(self.pixels)

    def page_lock(self) -> None:
        """Page-lock the slots for asynchronous copies to a GPU (after the workers forked:
        the driver may keep locked pages out of children). Copies are staged without it."""
        if self.device.type != "cuda":
            return
        status = int(
            torch.cuda.cudart().cudaHostRegister(self.pixels.data_ptr(), self.pixels.numel(), 0)
        )
        if status != 0:
            size = self.pixels.numel() >> 20
            log.warning("could not page-lock %d MB of loader slots (cudaError %d)", size, status)
        self._locked = status == 0

    def read(self, indices: list[int]) -> torch.Tensor:
        """The pixels of ``indices`` (ascending, from one chunk) as a tensor on the device.

        On the CPU it is a copy; on a GPU the copy may still be running: `wait_until_free`
        before those slots are written again.
        """
        first = indices[0] % len(self.pixels)
        block = self.pixels[first : first + indices[-1] - indices[0] + 1]
        if self.device.type == "cpu":
            out = block.clone()
        else:
            out = block.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            self._copies.append((indices[0], done))
        if len(indices) < len(block):  # some items of the chunk failed or went elsewhere
            rows = torch.tensor([i - indices[0] for i in indices])
            if out.is_cuda:  # a pageable copy would wait for all the device's queued work
                rows = rows.pin_memory().to(out.device, non_blocking=True)
            out = out.index_select(0, rows)
        return out

    def bytes(self, index: int, size: int) -> np.ndarray:
        """A copy of the first ``size`` bytes of item ``index``'s slot (raw bytes, not pixels,
        stored with `put_bytes`)."""
        return self.pixels[index % len(self.pixels)].view(-1)[:size].numpy().copy()

    def wait_until_free(self, below: int) -> None:
        """Block until every copy that read an item with index < ``below`` has finished."""
        while self._copies and self._copies[0][0] < below:
            self._copies.popleft()[1].synchronize()

    def close(self) -> None:
        """Wait for outstanding copies and release the page lock."""
        self.wait_until_free(below=2**62)
        if self._locked:
            torch.cuda.cudart().cudaHostUnregister(self.pixels.data_ptr())
            self._locked = False


def _check_shared_memory(size: int, slots: int) -> None:
    """Refuse, with what to change, slots larger than the free shared memory: workers
    writing past it would die of SIGBUS."""
    try:
        free = shutil.disk_usage(SHARED_MEMORY).free
    except OSError:  # no /dev/shm to ask (not Linux)
        return
    if size > free:
        raise RuntimeError(
            f"the image loader needs {size >> 20} MB of shared memory ({slots} decoded images)"
            f" but {SHARED_MEMORY} has {free >> 20} MB free: lower the batch size or the number"
            " of loader workers, or give the machine more shared memory (docker: --shm-size)"
        )


def put_pixels(slots: torch.Tensor, index: int, pixels: np.ndarray) -> None:
    """Store item ``index``'s pixels (one slot's shape) in its slot (in a loader worker)."""
    np.copyto(slots[index % len(slots)].numpy(), pixels)


def put_bytes(slots: torch.Tensor, index: int, data: bytes) -> None:
    """Store ``data`` (at most one slot's size) in item ``index``'s slot (in a loader worker)."""
    slot = slots[index % len(slots)].view(-1)
    if len(data) > len(slot):
        raise ValueError(f"{len(data)} bytes do not fit a slot of {len(slot)}")
    np.copyto(slot[: len(data)].numpy(), np.frombuffer(data, np.uint8))
