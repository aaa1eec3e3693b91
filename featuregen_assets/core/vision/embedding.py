"""DINOv2 feature vectors for image files: decode in loader workers, one batched forward.

Workers open each file (JPEG draft mode, EXIF orientation, RGB), resize and centre-crop it
in one Pillow call to the model's preprocessing (from its image-processor config) and write
the uint8 pixels into shared slots (``core.pixel_ring``); the device normalises, runs the
model under ``inference_mode`` and returns L2-normalised CLS (or CLS ⊕ mean-of-patches)
vectors. On a GPU with torchvision, workers hand a share of the JPEGs (``gpu_jpeg_share``)
over still encoded and nvJPEG decodes them (``core.gpu_decode``) on a thread of its own
while the workers decode the rest: both decoders feed the model at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from featuregen_assets.core.vision.compute import (
    ComputeSettings,
    autocast,
    free_memory,
    load_pretrained,
    loader_worker_init,
    loader_workers,
    place,
)
from featuregen_assets.core.vision.gpu_decode import (
    DeviceJpegDecoder,
    EncodedJpeg,
    gpu_jpeg_decoder,
    jpeg_header,
)
from featuregen_assets.core.vision.model_profiles import ModelSpec, config_fingerprint, model_key
from featuregen_assets.core.vision.pixel_ring import (
    PixelRing,
    put_bytes,
    put_pixels,
    read_chunks,
    ring_slots,
)
from featuregen_assets.core.vision.preprocess import CropResize
from featuregen_assets.core.vision.settings import EmbeddingSettings

POOLINGS = ("cls", "cls+mean")
T = TypeVar("T")
_END = object()


LOADER_CHUNK = 16


class _ImageFiles(Dataset):
    """Files decoded by Pillow into ring slots or, for ``gpu_share`` of them spread evenly,
    JPEGs left encoded for the device.

    An item is (index, None, None) when its pixels are in slot ``index % len(slots)``,
    (index, encoded JPEG, None) with the bytes in that slot when they fit (else left in the
    file: no worker pickles megabytes to the main process), or (index, None, error).
    """

    def __init__(
        self, paths: Sequence[Path], transform: CropResize, slots: torch.Tensor, gpu_share: float
    ):
        self.paths, self.transform, self.slots = list(paths), transform, slots
        self.gpu_share = gpu_share

    def __len__(self) -> int:
        return len(self.paths)

    def _for_device(self, i: int) -> bool:
        return int((i + 1) * self.gpu_share) > int(i * self.gpu_share)

    def __getitem__(self, i: int) -> tuple[int, EncodedJpeg | None, str | None]:
        try:
            encoded = self._encoded(i) if self._for_device(i) else None
            if encoded is not None:
                return i, encoded, None
            put_pixels(self.slots, i, self.transform.decode(self.paths[i]))
            return i, None, None
        except Exception as e:  # any undecodable file is reported, not fatal
            return i, None, f"{type(e).__name__}: {e}"

    def _encoded(self, i: int) -> EncodedJpeg | None:
        """Item ``i`` as a JPEG for the device, its bytes in its slot or left in its file;
        None for anything nvJPEG does not take. Reads at most one slot's bytes unless the
        JPEG's headers run past them."""
        path, capacity = self.paths[i], self.slots[0].numel()
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(capacity)
        try:
            orientation = jpeg_header(head)
        except Exception:
            if len(head) == size:
                raise  # the whole file: it is broken
            orientation = jpeg_header(Path(path).read_bytes())
        if orientation is None:
            return None
        if size > capacity:
            return EncodedJpeg(None, size, orientation, str(path))
        put_bytes(self.slots, i, head)
        return EncodedJpeg(None, size, orientation)


def _collate(items):
    """A chunk: (indices whose pixels are in the ring, [(index, error)], [(index, encoded)])."""
    in_ring = [i for i, encoded, error in items if encoded is None and error is None]
    failed = [(i, error) for i, _, error in items if error is not None]
    encoded = [(i, item) for i, item, _ in items if item is not None]
    return in_ring, failed, encoded


class ImageEmbedder:
    """A DINOv2 model (any size, with or without registers) loaded once, embedding files."""

    def __init__(self, spec: ModelSpec, compute: ComputeSettings, settings: EmbeddingSettings):
        from transformers import AutoImageProcessor, AutoModel

        if settings.pooling not in POOLINGS:
            raise ValueError(f"pooling {settings.pooling!r}: expected one of {POOLINGS}")
        if not 0.0 <= compute.gpu_jpeg_share <= 1.0:
            raise ValueError(f"gpu_jpeg_share {compute.gpu_jpeg_share}: expected 0 to 1")
        self.spec, self.compute, self.settings = spec, compute, settings
        self.device, self.dtype = place(compute)
        processor = AutoImageProcessor.from_pretrained(spec.name_or_path)
        self.transform = CropResize.from_processor(processor)
        scale = processor.rescale_factor if processor.do_rescale else 1.0
        mean = processor.image_mean if processor.do_normalize else [0.0, 0.0, 0.0]
        std = processor.image_std if processor.do_normalize else [1.0, 1.0, 1.0]
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._mul = (scale / std_t).to(self.device)
        self._add = (-torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t).to(
            self.device
        )
        self.model = load_pretrained(AutoModel, spec.name_or_path, compute, self.device, self.dtype)
        decode = gpu_jpeg_decoder() if self.device.type == "cuda" else None
        self._jpeg_decoder = (
            DeviceJpegDecoder(decode, self.transform, self.device) if decode else None
        )
        self._forward = torch.compile(self.model) if compute.compile else self.model
        config = self.model.config
        self._skip = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
        self.dim = config.hidden_size * (2 if settings.pooling == "cls+mean" else 1)
        self.key = model_key(
            spec.model_id,
            {
                "model": config_fingerprint(config),
                "embedding": asdict(settings),
                "preprocess": asdict(self.transform),
                "normalization": [scale, list(mean), list(std)],
            },
        )

    def pixels_to_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC pixels (any device) to the model's normalised NCHW input on its device."""
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Float NCHW pixels (0–255) on the device to the model's input."""
        return (x * self._mul + self._add).to(self.dtype)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.dtype):
            return self._forward(pixel_values=x).last_hidden_state

    @torch.inference_mode()
    def embed_pixels(self, x: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Vectors (float32, on the device) for a normalised NCHW batch already on the device;
        `pooling` overrides the settings' (the research report's CLS ⊕ mean variant)."""
        hidden = self._hidden(x)
        vec = hidden[:, 0]
        if (pooling or self.settings.pooling) == "cls+mean":
            vec = torch.cat([vec, hidden[:, self._skip :].mean(dim=1)], dim=-1)
        vec = vec.float()
        return F.normalize(vec, dim=-1) if self.settings.normalize else vec

    @torch.inference_mode()
    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, rows, cols, hidden), float32, of a normalised NCHW batch."""
        patch = self.model.config.patch_size
        rows, cols = x.shape[-2] // patch, x.shape[-1] // patch
        return self._hidden(x)[:, self._skip :].float().reshape(len(x), rows, cols, -1)

    def chunks(
        self, paths: Sequence[Path]
    ) -> Iterator[tuple[list[int], torch.Tensor | None, list, list[tuple[int, EncodedJpeg]]]]:
        """(indices, their uint8 NHWC pixels on the device, [(index, error)], encoded JPEGs).

        Loader workers decode into a `PixelRing` and hand over chunks of at most
        LOADER_CHUNK items, not whole model batches, so the first forward starts after a few
        images are decoded rather than a full batch.
        """
        if not paths:  # no workers, no slots
            return
        workers = loader_workers(self.compute, self.device)
        chunk = min(self.compute.batch_size, LOADER_CHUNK)
        prefetch = 4 if workers else None
        slots = ring_slots(chunk, self.compute.batch_size, (prefetch or 0) * workers)
        ring = PixelRing(slots, self.transform.output_shape(), self.device)
        share = self.compute.gpu_jpeg_share if self._jpeg_decoder is not None else 0.0
        loader = DataLoader(
            _ImageFiles(paths, self.transform, ring.pixels, gpu_share=share),
            batch_size=chunk,
            num_workers=workers,
            collate_fn=_collate,
            worker_init_fn=loader_worker_init if workers else None,
            prefetch_factor=prefetch,
            persistent_workers=False,
        )
        for in_ring, pixels, failed, encoded in read_chunks(loader, ring):
            # bytes left in a slot are copied out now, before a later dispatch reuses it
            for k, (index, item) in enumerate(encoded):
                if item.path is None:
                    encoded[k] = (index, item._replace(data=ring.bytes(index, item.size)))
            yield in_ring, pixels, failed, encoded

    def embed_files(
        self, paths: Sequence[Path]
    ) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """(index into ``paths``, unit float32 vector or None, error or None), in index order.

        On a GPU the next batch's forward is queued before the last batch's vectors are read
        back, so the host never waits on the device while it has work to hand over.
        """
        pending = None  # (indices, failed, host vectors, copy-done event)
        for indices, inputs, failed in self.batches(paths):
            current = None
            if inputs is not None:
                vec = self.embed_pixels(inputs)
                if self.device.type == "cuda":
                    host = torch.empty(vec.shape, dtype=vec.dtype, pin_memory=True)
                    host.copy_(vec, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record()
                    current = (indices, failed, host, done)
                else:
                    current = (indices, failed, vec, None)
            else:
                current = (indices, failed, None, None)
            if pending is not None:
                yield from _emit(*pending)
            pending = current
        if pending is not None:
            yield from _emit(*pending)

    def batches(self, paths: Sequence[Path]):
        """Model inputs of up to `batch_size` images, assembled from the loader's chunks.

        Yields (indices, normalised NCHW input or None, [(index, error)]); the input's rows
        follow ``indices``. JPEGs for the device are decoded one batch ahead on the decoder's
        own thread (`DeviceJpegDecoder`): while it decodes batch N, this thread gathers batch
        N + 1 and the model runs batch N − 1.
        """
        started = (self._start_batch(*parts) for parts in self._gathered(paths))
        for batch in _one_ahead(started):
            yield self._finish_batch(*batch)

    def _gathered(self, paths: Sequence[Path]) -> Iterator[tuple[list, list, list, list]]:
        """The loader's chunks gathered into model batches: (indices in the ring, their pixel
        tensors, [(index, error)], [(index, encoded JPEG)])."""
        indices: list[int] = []
        pixels: list[torch.Tensor] = []
        failed: list[tuple[int, str]] = []
        encoded: list[tuple[int, EncodedJpeg]] = []
        for chunk_indices, chunk_pixels, chunk_failed, chunk_encoded in self.chunks(paths):
            indices += chunk_indices
            failed += chunk_failed
            encoded += chunk_encoded
            if chunk_pixels is not None:
                pixels.append(chunk_pixels)
            if len(indices) + len(encoded) >= self.compute.batch_size:
                yield indices, pixels, failed, encoded
                indices, pixels, failed, encoded = [], [], [], []
        if indices or failed or encoded:
            yield indices, pixels, failed, encoded

    def _start_batch(
        self,
        indices: list[int],
        pixels: list[torch.Tensor],
        failed: list[tuple[int, str]],
        encoded: list[tuple[int, EncodedJpeg]],
    ) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]], Future | None]:
        """Normalise the workers' pixels and hand the batch's JPEGs to the device decoder."""
        inputs = self.pixels_to_input(torch.cat(pixels)) if pixels else None
        decoding = self._jpeg_decoder.submit(encoded) if encoded else None
        return indices, inputs, failed, decoding

    def _finish_batch(
        self,
        indices: list[int],
        inputs: torch.Tensor | None,
        failed: list[tuple[int, str]],
        decoding: Future | None,
    ) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
        """The batch's model input: the workers' rows, then the device-decoded ones."""
        parts = [inputs] if inputs is not None else []
        if decoding is not None:
            decoded_indices, decoded, decode_failed = self._jpeg_decoder.result(decoding)
            indices, failed = indices + decoded_indices, failed + decode_failed
            if decoded is not None:
                parts.append(self._normalise(decoded))
        return indices, torch.cat(parts) if parts else None, failed

    def close(self) -> None:
        """Drop the model and return its GPU memory."""
        if self._jpeg_decoder is not None:
            self._jpeg_decoder.close()
        self.model = self._forward = None
        free_memory(self.device)


def _one_ahead(items: Iterable[T]) -> Iterator[T]:
    """Each item of ``items``, yielded once the next one has been produced (its work started)."""
    iterator = iter(items)
    previous = next(iterator, _END)
    while previous is not _END:
        current = next(iterator, _END)
        yield previous
        previous = current


def _emit(indices, failed, vectors, done) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    if done is not None:
        done.synchronize()
    rows: list[tuple[int, np.ndarray | None, str | None]] = [(i, None, e) for i, e in failed]
    if vectors is not None:
        arr = vectors.numpy()
        finite = np.isfinite(arr).all(axis=1)
        rows += [
            (i, arr[k], None) if finite[k] else (i, None, "non-finite embedding (NaN or inf)")
            for k, i in enumerate(indices)
        ]
    yield from sorted(rows, key=lambda r: r[0])
