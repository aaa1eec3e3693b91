"""JPEG decoding on the GPU (nvJPEG through torchvision), with Pillow's orientation and crop.

Loader workers then only read bytes and the EXIF orientation; `DeviceJpegDecoder` decodes,
orients, resizes and crops (one resize per distinct image size in a batch) on a thread and a
CUDA stream of its own. Other formats, and JPEGs nvJPEG refuses, keep the Pillow path.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from featuregen_assets.core.vision.preprocess import CropResize

JPEG_MAGIC = b"\xff\xd8"
EXIF_ORIENTATION = 0x0112
GPU_MODES = ("RGB", "L")  # CMYK and others go through Pillow


BatchDecoder = Callable[[list[torch.Tensor]], list[torch.Tensor]]
Failures = list[tuple[int, str]]


class EncodedJpeg(NamedTuple):
    """A JPEG left for the device to decode: its bytes (None until read: from the item's ring
    slot, or from ``path`` when larger than a slot), their size and the EXIF orientation."""

    data: np.ndarray | None
    size: int
    orientation: int
    path: str | None = None


def gpu_jpeg_decoder() -> BatchDecoder | None:
    """A batch decoder (encoded uint8 tensors → RGB CHW uint8 on CUDA), or None without one."""
    if not torch.cuda.is_available():
        return None
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # no torchvision, or one built without its image ops
        return None

    def decode(data: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")

    return decode


def jpeg_header(data: bytes) -> int | None:
    """The EXIF orientation (1–8) of a JPEG nvJPEG can take, or None for anything else."""
    if data[:2] != JPEG_MAGIC:
        return None
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in GPU_MODES:
            return None
        return int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to a CHW image, as `PIL.ImageOps.exif_transpose` does."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1).flip(-2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-1, -2)
    if orientation == 6:
        return torch.rot90(image, k=-1, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-1, -2).flip(-1).flip(-2)
    if orientation == 8:
        return torch.rot90(image, k=1, dims=(-2, -1))
    return image


def resize_crop(
    images: torch.Tensor, size: tuple[int, int], crop: Sequence[int] | None
) -> torch.Tensor:
    """NCHW uint8 images of one size → NCHW float (0–255), resized to ``size`` (height,
    width) with antialiased bicubic, then centre-cropped to ``crop`` (height, width).

    One call serves every image of that size, so a batch costs a few kernels per size.
    """
    rh, rw = size
    x = F.interpolate(
        images.float(), size=(rh, rw), mode="bicubic", antialias=True, align_corners=False
    )
    if not crop:
        return x
    ch, cw = crop
    top, left = (rh - ch) // 2, (rw - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def as_tensor(data: np.ndarray) -> torch.Tensor:
    """Encoded bytes (a uint8 array) as the tensor nvJPEG takes.

    The embedder's arrays (copied out of a ring slot, or read from the file) are writable and
    used as they are; a read-only one is copied, since torch cannot share it.
    """
    return torch.from_numpy(data if data.flags.writeable else data.copy())


def read_files(
    encoded: list[tuple[int, EncodedJpeg]],
) -> tuple[list[tuple[int, EncodedJpeg]], Failures]:
    """The JPEGs with their bytes (read here those left in their files), and read failures."""
    ready, failed = [], []
    for index, item in encoded:
        if item.path is not None:
            try:
                item = item._replace(data=np.fromfile(item.path, np.uint8))
            except OSError as e:  # gone or unreadable since the worker looked: reported
                failed.append((index, f"{type(e).__name__}: {e}"))
                continue
        ready.append((index, item))
    return ready, failed


class DeviceJpegDecoder:
    """Batches of JPEGs decoded (``decode``: nvJPEG on a GPU), oriented, resized and cropped to
    ``transform``'s geometry on ``device``, on a thread of their own: torchvision's nvJPEG
    call holds its calling thread until the whole batch is decoded.

    On a GPU the work runs on a side stream. nvJPEG writes from its own stream into memory
    allocated on the calling stream; called on the model's stream, that memory could be a
    block the previous forward still uses. The side stream has finished its own earlier work
    before each decode, so no block it hands out is in use; `result` makes the caller's stream
    wait for the batch.
    """

    def __init__(self, decode: BatchDecoder, transform: CropResize, device: torch.device):
        self.decode, self.transform, self.device = decode, transform, device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="device-decode")

    def submit(self, encoded: list[tuple[int, EncodedJpeg]]) -> Future:
        """Start decoding (index, JPEG) pairs on the decoder's thread."""
        return self._thread.submit(self._on_stream, encoded)

    def result(self, decoding: Future) -> tuple[list[int], torch.Tensor | None, Failures]:
        """(indices, float NCHW pixels 0–255 in that order, failures) of a submitted batch,
        ready for work queued next on the caller's current stream."""
        indices, pixels, failed, done = decoding.result()
        if done is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(done)
            if pixels is not None:
                pixels.record_stream(current)
        return indices, pixels, failed

    def close(self) -> None:
        """Stop the decoder's thread."""
        self._thread.shutdown(cancel_futures=True)

    def _on_stream(
        self, encoded: list[tuple[int, EncodedJpeg]]
    ) -> tuple[list[int], torch.Tensor | None, Failures, torch.cuda.Event | None]:
        """`_decode_resize` on the side stream, with the event that marks the end of its work
        there (None without a side stream)."""
        if self._stream is None:
            return (*self._decode_resize(encoded), None)
        self._stream.synchronize()
        with torch.cuda.stream(self._stream):
            result = self._decode_resize(encoded)
        return (*result, self._stream.record_event())

    def _decode_resize(
        self, encoded: list[tuple[int, EncodedJpeg]]
    ) -> tuple[list[int], torch.Tensor | None, Failures]:
        """Decode, orient, resize and crop. JPEGs larger than a ring slot are read from their
        files here. Images of one size share one resize. A JPEG the batch decoder refuses is
        retried alone, then through Pillow."""
        encoded, failed = read_files(encoded)
        tensors = [as_tensor(item.data) for _, item in encoded]
        try:
            images = self.decode(tensors) if tensors else []
        except RuntimeError:
            images = [self._decode_one(tensor) for tensor in tensors]
        by_size: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}
        cropped: list[tuple[int, torch.Tensor]] = []  # JPEGs nvJPEG refused, done by Pillow
        for (index, item), image in zip(encoded, images, strict=True):
            try:
                if image is None:
                    rgb = self.transform.decode(io.BytesIO(item.data.tobytes()))
                    cropped.append((index, torch.from_numpy(rgb).permute(2, 0, 1)))
                else:
                    upright = orient(image, item.orientation)
                    by_size.setdefault(tuple(upright.shape[-2:]), []).append((index, upright))
            except Exception as e:  # an undecodable file is reported, not fatal
                failed.append((index, f"{type(e).__name__}: {e}"))
        indices = [index for index, _ in cropped]
        parts = [torch.stack([px for _, px in cropped]).to(self.device).float()] if cropped else []
        for (height, width), group in by_size.items():
            resized_width, resized_height = self.transform.output_size(width, height)
            stacked = torch.stack([image for _, image in group])
            parts.append(resize_crop(stacked, (resized_height, resized_width), self.transform.crop))
            indices += [index for index, _ in group]
        return indices, torch.cat(parts) if parts else None, failed

    def _decode_one(self, tensor: torch.Tensor) -> torch.Tensor | None:
        try:
            return self.decode([tensor])[0]
        except RuntimeError:
            return None
