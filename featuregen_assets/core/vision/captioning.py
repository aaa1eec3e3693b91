"""Qwen2-VL captions for image files: batched greedy generation with left padding.

Inputs are built from the image processor and the tokenizer's chat template, with no need for
torchvision: each ``<|image_pad|>`` is expanded to ``prod(image_grid_thw) // merge_size**2``
tokens, exactly as ``Qwen2VLProcessor`` does, and the batch is padded on the left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
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
from featuregen_assets.core.vision.model_profiles import ModelSpec, config_fingerprint, model_key
from featuregen_assets.core.vision.preprocess import open_rgb

IMAGE_PAD = "<|image_pad|>"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionSettings:
    """What to ask and how much to let the model see and say.

    ``min_pixels``/``max_pixels`` bound the resized image, hence the visual tokens
    (one per 28×28 pixels): 64 to 512 here, about 224² to 630² pixels.
    ``min_new_tokens`` forces fixed-length output (benchmarks); 0 for real use.
    """

    instruction: str = "Describe this image in one English sentence, fit for a search index."
    max_new_tokens: int = 48
    min_pixels: int = 64 * 28 * 28
    max_pixels: int = 512 * 28 * 28
    min_new_tokens: int = 0


def chat_text(tokenizer, instruction: str) -> str:
    """The chat-template prompt for one image followed by the instruction."""
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def build_text_inputs(
    tokenizer, prompt: str, image_grid_thw: torch.Tensor, merge_size: int
) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``mm_token_type_ids``, one image each.

    The single ``<|image_pad|>`` of ``prompt`` becomes ``prod(grid_thw) // merge_size**2``
    copies for each image, as ``Qwen2VLProcessor`` expands it.
    """
    counts = (image_grid_thw.prod(dim=-1) // merge_size**2).tolist()
    texts = [prompt.replace(IMAGE_PAD, IMAGE_PAD * n, 1) for n in counts]
    enc = tokenizer(texts, padding=True, padding_side="left", return_tensors="pt")
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    enc["mm_token_type_ids"] = (enc["input_ids"] == image_id).to(torch.int32)
    return dict(enc)


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], processor, size: dict[str, int]):
        self.paths, self.processor, self.size = list(paths), processor, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            out = self.processor(
                images=[open_rgb(self.paths[i])], size=self.size, return_tensors="pt"
            )
            return i, out["pixel_values"], out["image_grid_thw"], None
        except Exception as e:  # any undecodable file is reported, not fatal
            return i, None, None, f"{type(e).__name__}: {e}"


def _collate(items):
    ok = [(i, px, thw) for i, px, thw, _ in items if px is not None]
    failed = [(i, err) for i, px, _, err in items if px is None]
    if not ok:
        return [], None, None, failed
    return (
        [i for i, _, _ in ok],
        torch.cat([px for _, px, _ in ok]),
        torch.cat([thw for _, _, thw in ok]),
        failed,
    )


class Captioner:
    """A Qwen2-VL model loaded once, captioning files in batches."""

    def __init__(self, spec: ModelSpec, compute: ComputeSettings, settings: CaptionSettings):
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

        self.spec, self.compute, self.settings = spec, compute, settings
        self.device, self.dtype = place(compute)
        self.image_processor = AutoImageProcessor.from_pretrained(spec.name_or_path)
        self.size = {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels}
        self.tokenizer = AutoTokenizer.from_pretrained(spec.name_or_path, padding_side="left")
        self.prompt = chat_text(self.tokenizer, settings.instruction)
        self.model = load_pretrained(
            Qwen2VLForConditionalGeneration, spec.name_or_path, compute, self.device, self.dtype
        )
        if compute.compile:
            self.model.forward = torch.compile(self.model.forward)
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos])
        self._pad = self.tokenizer.pad_token_id
        self.key = model_key(
            spec.model_id,
            {"model": config_fingerprint(self.model.config), "caption": asdict(settings)},
        )
        self.batch_limit = compute.batch_size

    def inputs(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> dict:
        """The model inputs for a batch of processed images, on the model's device."""
        enc = build_text_inputs(
            self.tokenizer, self.prompt, grid_thw, self.image_processor.merge_size
        )
        enc["pixel_values"] = pixel_values
        enc["image_grid_thw"] = grid_thw
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in enc.items()}
        # Cast on the device: a cast on the CPU (0.1 s for a batch of 64) would also leave
        # the loader's page-locked copy behind and make the transfer a synchronous one.
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    @torch.inference_mode()
    def generate(self, inputs: dict) -> tuple[list[str], list[bool]]:
        """Greedy captions for prepared inputs, and whether each hit ``max_new_tokens``."""
        s = self.settings
        with autocast(self.device, self.dtype):
            out = self.model.generate(
                **inputs,
                do_sample=False,
                num_beams=1,
                max_new_tokens=s.max_new_tokens,
                min_new_tokens=s.min_new_tokens,
                pad_token_id=self._pad,
            )
        new = out[:, inputs["input_ids"].shape[1] :].cpu()
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        hit = [
            len(row) >= s.max_new_tokens and not any(t in self._eos for t in row.tolist())
            for row in new
        ]
        return [t.strip() for t in texts], hit

    def caption_batch(
        self, pixel_values: torch.Tensor, grid_thw: torch.Tensor
    ) -> tuple[list[str], list[bool]]:
        """`generate` for a batch of processed images, in parts of at most `batch_limit`.

        A part that runs out of GPU memory is captioned in halves, and `batch_limit` stays at
        the half for the batches after it.
        """
        n = len(grid_thw)
        if n > self.batch_limit:
            head = int(grid_thw[: self.batch_limit].prod(dim=-1).sum())
            texts, hits = self.caption_batch(pixel_values[:head], grid_thw[: self.batch_limit])
            rest = self.caption_batch(pixel_values[head:], grid_thw[self.batch_limit :])
            return texts + rest[0], hits + rest[1]
        try:
            return self.generate(self.inputs(pixel_values, grid_thw))
        except torch.OutOfMemoryError:
            if n == 1:
                raise
        # Past the except block, so that the failed attempt's tensors can be freed.
        self.batch_limit = n // 2
        free_memory(self.device)
        _log.warning(f"a batch of {n} ran out of GPU memory: captioning {n // 2} at a time")
        return self.caption_batch(pixel_values, grid_thw)

    def caption_files(
        self, paths: Sequence[Path]
    ) -> Iterator[tuple[int, str | None, str | None, bool]]:
        """(index into ``paths``, caption or None, error or None, hit max_new_tokens), in order."""
        workers = loader_workers(self.compute, self.device)
        loader = DataLoader(
            _ImageFiles(paths, self.image_processor, self.size),
            batch_size=self.compute.batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=loader_worker_init if workers else None,
        )
        for indices, pixels, grid_thw, failed in loader:
            rows: list[tuple[int, str | None, str | None, bool]] = [
                (i, None, err, False) for i, err in failed
            ]
            if indices:
                texts, hits = self.caption_batch(pixels, grid_thw)
                for i, text, hit in zip(indices, texts, hits, strict=True):
                    rows.append((i, text, None, hit) if text else (i, None, "empty caption", hit))
            yield from sorted(rows, key=lambda r: r[0])

    def close(self) -> None:
        """Drop the model and return its GPU memory."""
        self.model = None
        free_memory(self.device)
