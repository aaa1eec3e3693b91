"""`link_file_sensor`: each new or changed link file (`<category>.txt`, `.csv`, `.tsv`,
`.parquet`, `.jsonl`) becomes a partition and a run."""

import json

import dagster as dg

from featuregen_assets.core.ingest.link_formats import (
    LINK_FILE_NAMES,
    link_files,
    two_formats_message,
)
from featuregen_assets.core.ingest.link_snapshot import refusal
from featuregen_assets.core.ingest.links import category_error, category_of, file_digest
from featuregen_assets.jobs import category_pipeline_job
from featuregen_assets.partitions import category_partitions
from featuregen_assets.settings import Settings


@dg.sensor(
    job=category_pipeline_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Watches FEATUREGEN_LINKS_DIR for new or changed link files ({LINK_FILE_NAMES}).",
)
def link_file_sensor(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]
) -> dg.SensorResult:
    """Request one run per new or changed link file; the cursor holds what was seen."""
    seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    directory = settings.links_dir
    files = link_files(directory)
    formats: dict[str, list] = {}
    for path in files:
        formats.setdefault(category_of(path), []).append(path)
    known = set(context.instance.get_dynamic_partitions(category_partitions.name))
    new_partitions: list[str] = []
    run_requests: list[dg.RunRequest] = []
    cursor: dict[str, dict] = {}

    for path in files:
        category = category_of(path)
        previous = seen.get(path.name, {})
        reason = (
            category_error(category)
            or (
                two_formats_message(category, formats[category])
                if len(formats[category]) > 1
                else None
            )
            or refusal(directory, path)
        )
        if not reason:
            try:
                stat = path.stat()
                if (
                    previous.get("mtime_ns") == stat.st_mtime_ns
                    and previous.get("size") == stat.st_size
                ):
                    cursor[path.name] = previous
                    continue
                digest = file_digest(path)
            except OSError as exc:
                reason = f"cannot be read ({exc.strerror or exc})"
        if reason:
            if previous.get("skipped") != reason:
                context.log.warning(f"skipping link file {path.name}: {reason}")
            cursor[path.name] = {"skipped": reason}
            continue
        cursor[path.name] = {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size, "sha": digest}
        if previous.get("sha") == digest:
            continue
        if category not in known:
            new_partitions.append(category)
        run_requests.append(
            dg.RunRequest(
                partition_key=category,
                run_key=f"{category}:{digest}",
                tags={"link_file": path.name},
            )
        )

    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            [category_partitions.build_add_request(new_partitions)] if new_partitions else []
        ),
        cursor=json.dumps(cursor, sort_keys=True),
    )
