"""Per-category counts read back from the tables, for the CLI and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg


@dataclass
class CategorySummary:
    """What the tables hold for one category."""

    category: str
    links: int = 0
    downloaded: int = 0
    images: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    prompt_rows: int = 0
    embedding_rows: int = 0


def summarize(conn: psycopg.Connection) -> list[CategorySummary]:
    """One summary per category in `raw_images`, in category order."""
    summaries: dict[str, CategorySummary] = {}
    for category, status, count, images in conn.execute(
        "SELECT category, status, count(*), count(DISTINCT image_id) FROM raw_images"
        " GROUP BY category, status ORDER BY category, status"
    ):
        summary = summaries.setdefault(category, CategorySummary(category))
        summary.links += count
        if status == "ok":
            summary.downloaded += count
            summary.images += images
        else:
            summary.failed[status] = count
    for table, attribute in (
        ("image_prompts", "prompt_rows"),
        ("image_embeddings", "embedding_rows"),
    ):
        for category, count in conn.execute(
            f"SELECT r.category, count(*) FROM {table} t"
            " JOIN (SELECT DISTINCT category, image_id FROM raw_images WHERE status = 'ok') r"
            " USING (image_id) GROUP BY r.category"
        ):
            if category in summaries:
                setattr(summaries[category], attribute, count)
    return list(summaries.values())


def format_table(summaries: list[CategorySummary]) -> str:
    """A fixed-width text table of the summaries, with a total line."""
    header = ("category", "links", "downloaded", "failed (by reason)", "prompts", "embeddings")
    lines = [header]
    for s in summaries:
        failed = ", ".join(f"{reason} {n}" for reason, n in sorted(s.failed.items())) or "-"
        lines.append((s.category, s.links, s.downloaded, failed, s.prompt_rows, s.embedding_rows))
    lines.append(
        (
            "total",
            sum(s.links for s in summaries),
            sum(s.downloaded for s in summaries),
            sum(sum(s.failed.values()) for s in summaries),
            sum(s.prompt_rows for s in summaries),
            sum(s.embedding_rows for s in summaries),
        )
    )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            str(v).ljust(w) if i in (0, 3) else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )
