"""JPEG decoding on the GPU (nvJPEG through torchvision), with Pillow's orientation and crop.

Loader workers then only read bytes and the EXIF orientation; the GPU decodes, orients,
resizes and crops. Other formats, and JPEGs nvJPEG refuses, keep the Pillow path.
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
    image: torch.Tensor, output_size: Callable[[int, int], tuple[int, int]], crop: Sequence[int]
) -> torch.Tensor:
    """CHW uint8 → HWC uint8: bicubic antialiased resize to `output_size(w, h)`, centre crop."""
    height, width = image.shape[-2:]
    rw, rh = output_size(width, height)
    ch, cw = crop if crop else (rh, rw)
    x = F.interpolate(
        image[None].float(), size=(rh, rw), mode="bicubic", antialias=True, align_corners=False
    )
    top, left = (rh - ch) // 2, (rw - cw) // 2
    x = x[..., top : top + ch, left : left + cw]
    return x.clamp_(0, 255).round_().to(torch.uint8)[0].permute(1, 2, 0)


def as_tensor(data: np.ndarray) -> torch.Tensor:
    """Encoded bytes (a uint8 array from a loader worker) as the tensor nvJPEG takes."""
    return torch.from_numpy(np.ascontiguousarray(data))
