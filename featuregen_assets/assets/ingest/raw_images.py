"""`raw_images`: download a category's link file into the image store and `raw_images` table."""

from dataclasses import replace
from pathlib import Path

import dagster as dg
from pydantic import Field

from featuregen_assets.assets.config import set_fields
from featuregen_assets.core.ingest.image_store import ImageStore, StoreWriteError
from featuregen_assets.core.ingest.ingest import (
    DatabaseLost,
    failure_rate,
    ingest_link_file,
    status_counts,
)
from featuregen_assets.core.ingest.link_formats import (
    TABLE_FORMATS,
    TEXT_SUFFIX,
    Columns,
    LinkFileError,
    find_link_file,
    missing_link_file_message,
    write_as_text,
)
from featuregen_assets.core.ingest.link_snapshot import UTF8, link_snapshot
from featuregen_assets.core.ingest.store_check import StoreMissing
from featuregen_assets.core.runtime import paths
from featuregen_assets.core.runtime.progress import ProgressReporter
from featuregen_assets.partitions import category_partitions
from featuregen_assets.resources.postgres import PostgresResource
from featuregen_assets.settings import Settings


class RawImagesConfig(dg.Config):
    """Download settings over the run's (FEATUREGEN_*); the defaults serve UI backfills."""

    force: bool = Field(default=False, description="Download links already `ok` again.")
    concurrency: int | None = Field(
        default=None, description="Downloads in flight at once (FEATUREGEN_DOWNLOAD_CONCURRENCY)."
    )
    per_host: int | None = Field(
        default=None, description="Downloads in flight per host (FEATUREGEN_DOWNLOAD_PER_HOST)."
    )
    max_bytes: int | None = Field(
        default=None, description="Largest body accepted (FEATUREGEN_DOWNLOAD_MAX_BYTES)."
    )
    url_col: str | None = Field(
        default=None,
        description=f"{TABLE_FORMATS} link files: the URL column (FEATUREGEN_URL_COL).",
    )
    caption_col: str | None = Field(
        default=None,
        description=f"{TABLE_FORMATS} link files: the caption column, optional"
        " (FEATUREGEN_CAPTION_COL).",
    )

    def columns(self, settings: Settings) -> Columns:
        """The URL and caption columns of a tabular link file (these fields over `settings`)."""
        return Columns(
            url_col=self.url_col or settings.url_col,
            caption_col=self.caption_col or settings.caption_col,
        )


_NOT_DOWNLOAD_SETTINGS = frozenset({"force", "url_col", "caption_col"})


def _as_text(context: dg.AssetExecutionContext, link_file: Path, columns: Columns) -> Path:
    """The run's copy of the link file as the .txt the downloader reads (a tabular one
    converted line for line beside it, its unreadable rows logged)."""
    if link_file.suffix == TEXT_SUFFIX:
        return link_file
    target = link_file.with_suffix(TEXT_SUFFIX)
    report = write_as_text(link_file, columns, target)
    for bad in report.examples:
        context.log.warning(f"{link_file.name} row {bad.line_no}: skipped ({bad.reason})")
    if report.bad_rows > len(report.examples):
        context.log.warning(
            f"{link_file.name}: {report.bad_rows - len(report.examples)} more rows skipped"
        )
    return target


@dg.asset(
    partitions_def=category_partitions,
    group_name="ingest",
    kinds={"python", "postgres"},
    metadata={"table": "public.raw_images", "partition_expr": "category"},
)
def raw_images(
    context: dg.AssetExecutionContext,
    config: RawImagesConfig,
    postgres: PostgresResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """Images of the category's link file, downloaded, validated and stored by content hash."""
    category = context.partition_key
    try:
        link_file = find_link_file(settings.links_dir, category)
    except LinkFileError as error:
        raise dg.Failure(str(error)) from None
    if link_file is None:
        raise dg.Failure(missing_link_file_message(settings.links_dir, category))
    download = replace(settings.download, **set_fields(config, exclude=_NOT_DOWNLOAD_SETTINGS))
    progress = ProgressReporter(category, context.log.info, bar=settings.progress_bar)

    try:
        with (
            link_snapshot(
                settings.links_dir, link_file, paths.text_links_dir(settings.home)
            ) as snap,
            postgres.connection() as conn,
        ):
            if snap.encoding != UTF8:
                context.log.info(f"{link_file.name} is {snap.encoding} (byte-order mark): decoded")
            summary = ingest_link_file(
                _as_text(context, snap.path, config.columns(settings)),
                category,
                conn,
                ImageStore(paths.images_dir(settings.home)),
                download,
                force=config.force,
                on_progress=progress,
                progress_every_s=progress.interval_s,
                notify=context.log.warning,
            )
            stored = status_counts(conn, category)
    except (LinkFileError, DatabaseLost, StoreWriteError, StoreMissing) as exc:
        raise dg.Failure(str(exc)) from None

    lines = summary.lines
    for title, tally in (
        ("skipped", lines.skipped),
        ("duplicate", lines.duplicates),
        ("kept, caption cleaned", lines.cleaned),
        ("stored file damaged, downloaded again", summary.stored_files.damaged),
        ("stored file unreadable, left as it is", summary.stored_files.unreadable),
    ):
        for line in tally.lines():
            context.log.warning(f"{link_file.name}: {title}: {line}")
    if not summary.links:
        context.log.warning(
            f"{link_file.name} has no usable line ({lines.skipped.total} bad): nothing to download"
        )
    return dg.MaterializeResult(
        metadata={
            "links": summary.links,
            "attempted": summary.attempted,
            "skipped_already_ok": summary.skipped_ok,
            "duplicate_lines": lines.duplicates.total,
            "bad_lines": lines.skipped.total,
            "bad_lines_by_reason": dict(lines.skipped.counts),
            "captions_cleaned": lines.cleaned.total,
            "captions_updated": summary.captions_updated,
            "link_file_sha256": snap.sha256,
            "link_file_encoding": snap.encoding,
            "damaged_files_refetched": summary.stored_files.damaged.total,
            "unreadable_files": summary.stored_files.unreadable.total,
            "stored_files_hashed": summary.stored_files.hashed,
            "this_run_by_status": dict(summary.statuses),
            "stored_by_status": stored,
            "failure_rate": failure_rate(stored),
            "dagster/row_count": sum(stored.values()),
        },
    )
