"""The text search modes, defined once: what each is called, what it searches, which ranked
lists it reads. The API, the CLI and the page (through GET /api/info) read them here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

IMAGE, CAPTION, KEYWORD = "image", "caption", "keyword"  # the ranked lists
LISTS = (IMAGE, CAPTION, KEYWORD)


@dataclass(frozen=True)
class Mode:
    """One way to answer a text query: ``lists`` are the ranked lists it reads (several are
    fused by reciprocal rank)."""

    name: str
    label: str
    searches: str
    lists: tuple[str, ...]

    def as_dict(self) -> dict:
        """name, label and what it searches, for /api/info."""
        return {k: v for k, v in asdict(self).items() if k != "lists"}


MODES = (
    Mode(
        "caption",
        "Captions",
        "what the image's captions say (semantic: sentence vectors of its texts)",
        (CAPTION,),
    ),
    Mode(
        "image",
        "Image content",
        "what the pixels show (the aligned text encoder over the DINOv2 image vectors)",
        (IMAGE,),
    ),
    Mode("keyword", "Keywords", "the words of the captions and prompts (full text)", (KEYWORD,)),
    Mode(
        "hybrid",
        "Hybrid",
        "the lists above that have a weight, fused by reciprocal rank",
        (IMAGE, CAPTION, KEYWORD),
    ),
)
BY_NAME = {mode.name: mode for mode in MODES}
ALIASES = {"text": "image"}  # the image mode's name before captions were searched
FALLBACK_DEFAULT = "hybrid"  # the default when no stored measurement names one


def mode_named(name: str) -> Mode:
    """The mode called ``name`` (or an alias of it); ValueError names the choices."""
    mode = BY_NAME.get(ALIASES.get(name, name))
    if mode is None:
        choices = ", ".join([*BY_NAME, *ALIASES])
        raise ValueError(f"mode must be one of {choices}, not {name!r}")
    return mode


def mode_names() -> tuple[str, ...]:
    """Every name a mode answers to, aliases last."""
    return (*BY_NAME, *ALIASES)
