"""JPEG decoding on the GPU (nvJPEG through torchvision), with Pillow's orientation and crop.

Loader workers then only read bytes and the EXIF orientation; the GPU decodes, orients,
resizes and crops (one resize per distinct image size in a batch). Other formats, and
JPEGs nvJPEG refuses, keep the Pillow path.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

JPEG_MAGIC = b"\xff\xd8"
EXIF_ORIENTATION = 0x0112
GPU_MODES = ("RGB", "L")  # CMYK and others go through Pillow


def gpu_jpeg_decoder() -> Callable[[list[torch.Tensor]], list[torch.Tensor]] | None:
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
    """Encoded bytes (a uint8 array from a loader worker) as the tensor nvJPEG takes.

    Arrays that crossed from a worker process are writable and are used as they are.
    """
    return torch.from_numpy(data if data.flags.writeable else data.copy())
