"""Per-category counts read back from the tables, for the CLI and the demo.

An image is counted once however many links or categories point to it: a category's `images`
are its distinct downloaded images, and the total's images, prompts and embeddings are those
of the distinct images of the categories shown (not the sum of the category lines). A
category's prompts are the generated prompts of its images and its own link captions (model
`link-file:<category>`), not the captions other categories' link files give the same image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

TOTAL = "total"


@dataclass
class CategorySummary:
    """What the tables hold for one category (or, as `total`, for several)."""

    category: str
    links: int = 0
    downloaded: int = 0
    images: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    prompt_rows: int = 0
    embedding_rows: int = 0


_LINKS = """
SELECT category, status, count(*), count(DISTINCT image_id) FROM raw_images
WHERE %(all)s OR category = ANY(%(categories)s)
GROUP BY category, status ORDER BY category, status
"""
# Each category's (image, category) pairs; a prompt is the category's when it is generated
# or the category's own link caption.
_OWN_ROWS = """
WITH shown AS (
    SELECT DISTINCT category, image_id FROM raw_images
    WHERE status = 'ok' AND (%(all)s OR category = ANY(%(categories)s))
)
SELECT s.category, count(*) FROM image_prompts p JOIN shown s USING (image_id)
WHERE p.model NOT LIKE 'link-file:%%' OR p.model = 'link-file:' || s.category
GROUP BY s.category
"""
_TOTAL_PROMPTS = """
SELECT count(*) FROM image_prompts p WHERE EXISTS (
    SELECT 1 FROM raw_images r
    WHERE r.image_id = p.image_id AND r.status = 'ok'
      AND (%(all)s OR r.category = ANY(%(categories)s))
      AND (p.model NOT LIKE 'link-file:%%' OR p.model = 'link-file:' || r.category))
"""
_EMBEDDINGS = """
WITH shown AS (
    SELECT DISTINCT category, image_id FROM raw_images
    WHERE status = 'ok' AND (%(all)s OR category = ANY(%(categories)s))
)
SELECT s.category, count(*) FROM image_embeddings e JOIN shown s USING (image_id)
GROUP BY s.category
"""
_TOTAL_IMAGES = """
SELECT count(DISTINCT image_id),
       (SELECT count(*) FROM image_embeddings e WHERE e.image_id IN (
            SELECT image_id FROM raw_images
            WHERE status = 'ok' AND (%(all)s OR category = ANY(%(categories)s))))
FROM raw_images WHERE status = 'ok' AND (%(all)s OR category = ANY(%(categories)s))
"""


def summarize(
    conn: psycopg.Connection, categories: list[str] | None = None
) -> list[CategorySummary]:
    """One summary per category in `raw_images` (those of `categories` only, when given), in
    category order, and a last one, `total`, counting each image once."""
    params = {"all": categories is None, "categories": categories or []}
    summaries: dict[str, CategorySummary] = {}
    for category, status, count, images in conn.execute(_LINKS, params):
        summary = summaries.setdefault(category, CategorySummary(category))
        summary.links += count
        if status == "ok":
            summary.downloaded += count
            summary.images += images
        else:
            summary.failed[status] = count
    for category, count in conn.execute(_OWN_ROWS, params):
        summaries[category].prompt_rows = count
    for category, count in conn.execute(_EMBEDDINGS, params):
        summaries[category].embedding_rows = count
    total = CategorySummary(TOTAL)
    for s in summaries.values():
        total.links += s.links
        total.downloaded += s.downloaded
        for reason, count in s.failed.items():
            total.failed[reason] = total.failed.get(reason, 0) + count
    total.images, total.embedding_rows = conn.execute(_TOTAL_IMAGES, params).fetchone()
    total.prompt_rows = conn.execute(_TOTAL_PROMPTS, params).fetchone()[0]
    return [*summaries.values(), total]


def format_table(summaries: list[CategorySummary]) -> str:
    """A fixed-width text table of `summarize`'s summaries (its total as the last line)."""
    header = (
        "category",
        "links",
        "downloaded",
        "images",
        "failed (by reason)",
        "prompts",
        "embeddings",
    )
    lines = [header]
    for s in summaries:
        failed = ", ".join(f"{reason} {n}" for reason, n in sorted(s.failed.items())) or "-"
        if s.category == TOTAL:
            failed = str(sum(s.failed.values()))
        lines.append(
            (s.category, s.links, s.downloaded, s.images, failed, s.prompt_rows, s.embedding_rows)
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            str(v).ljust(w) if i in (0, 4) else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )
