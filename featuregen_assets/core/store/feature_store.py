"""Queries over the three tables that the feature assets share."""

from __future__ import annotations

import psycopg


def image_count(conn: psycopg.Connection, category: str) -> int:
    """How many distinct images of the category are downloaded (`ok`)."""
    row = conn.execute(
        "SELECT count(DISTINCT image_id) FROM raw_images WHERE category = %s AND status = 'ok'",
        (category,),
    )
    return row.fetchone()[0]


def missing_embeddings(
    conn: psycopg.Connection, category: str, model: str
) -> list[tuple[str, str]]:
    """Images of the category with no embedding from `model` yet."""
    rows = conn.execute(
        "SELECT DISTINCT ON (r.image_id) r.image_id, r.path FROM raw_images r"
        " WHERE r.category = %s AND r.status = 'ok' AND NOT EXISTS ("
        "   SELECT 1 FROM image_embeddings e WHERE e.image_id = r.image_id AND e.model = %s)"
        " ORDER BY r.image_id",
        (category, model),
    )
    return rows.fetchall()


def missing_prompts(
    conn: psycopg.Connection, category: str, model: str, source: str
) -> list[tuple[str, str]]:
    """Images of the category with no prompt from `model` and `source` yet."""
    rows = conn.execute(
        "SELECT DISTINCT ON (r.image_id) r.image_id, r.path FROM raw_images r"
        " WHERE r.category = %s AND r.status = 'ok' AND NOT EXISTS ("
        "   SELECT 1 FROM image_prompts p"
        "   WHERE p.image_id = r.image_id AND p.model = %s AND p.source = %s)"
        " ORDER BY r.image_id",
        (category, model, source),
    )
    return rows.fetchall()


def link_captions(
    conn: psycopg.Connection, category: str, model: str, source: str
) -> list[tuple[str, str]]:
    """`(image_id, caption)` of the category's downloaded links that came with a caption (the
    first link's, by URL, for an image linked twice), unless stored as that prompt already."""
    rows = conn.execute(
        "SELECT image_id, caption FROM ("
        "   SELECT DISTINCT ON (image_id) image_id, caption FROM raw_images"
        "   WHERE category = %s AND status = 'ok' AND caption IS NOT NULL AND caption <> ''"
        "   ORDER BY image_id, url) c"
        " WHERE NOT EXISTS ("
        "   SELECT 1 FROM image_prompts p WHERE p.image_id = c.image_id"
        "   AND p.model = %s AND p.source = %s AND p.prompt = c.caption)"
        " ORDER BY image_id",
        (category, model, source),
    )
    return rows.fetchall()


def embedding_stats(conn: psycopg.Connection, category: str, model: str) -> dict[str, float]:
    """Counts and norms of the category's embeddings from `model`, for the asset checks."""
    row = conn.execute(
        """
        SELECT count(DISTINCT r.image_id),
               count(DISTINCT e.image_id),
               min(vector_dims(e.embedding)), max(vector_dims(e.embedding)),
               min(vector_norm(e.embedding)), max(vector_norm(e.embedding))
        FROM raw_images r
        LEFT JOIN image_embeddings e ON e.image_id = r.image_id AND e.model = %s
        WHERE r.category = %s AND r.status = 'ok'
        """,
        (model, category),
    ).fetchone()
    keys = ("images", "embedded", "min_dim", "max_dim", "min_norm", "max_norm")
    return dict(zip(keys, row, strict=True))


def prompt_stats(conn: psycopg.Connection, category: str, model: str) -> dict[str, float]:
    """Counts of the category's generated prompts from `model`, for the asset checks."""
    row = conn.execute(
        """
        SELECT count(DISTINCT r.image_id),
               count(DISTINCT p.image_id),
               count(DISTINCT p.image_id) FILTER (WHERE btrim(p.prompt) = ''),
               count(DISTINCT p.image_id) FILTER (WHERE p.truncated)
        FROM raw_images r
        LEFT JOIN image_prompts p
          ON p.image_id = r.image_id AND p.model = %s AND p.source = 'generated'
        WHERE r.category = %s AND r.status = 'ok'
        """,
        (model, category),
    ).fetchone()
    return dict(zip(("images", "prompted", "empty", "truncated"), row, strict=True))


TEXT_SHA = "encode(sha256(convert_to(p.prompt, 'UTF8')), 'hex')"  # prompt_embeddings.text_sha


def missing_text_vectors(
    conn: psycopg.Connection, category: str, model: str
) -> list[tuple[str, str, str, str, str]]:
    """`(image_id, prompt_model, source, text, text_sha)` of every text (link caption or
    generated prompt) of the category's images with no vector from sentence encoder `model`
    of that text yet."""
    rows = conn.execute(
        f"""
        SELECT p.image_id, p.model, p.source, p.prompt, {TEXT_SHA}
        FROM image_prompts p
        WHERE p.image_id IN (SELECT image_id FROM raw_images
                             WHERE category = %(category)s AND status = 'ok')
          AND NOT EXISTS (
            SELECT 1 FROM prompt_embeddings e
            WHERE e.image_id = p.image_id AND e.model = %(model)s
              AND e.prompt_model = p.model AND e.source = p.source AND e.text_sha = {TEXT_SHA})
        ORDER BY p.image_id, p.model, p.source
        """,
        {"category": category, "model": model},
    )
    return rows.fetchall()


def text_count(conn: psycopg.Connection, category: str) -> int:
    """How many texts (image_prompts rows) the category's downloaded images have."""
    row = conn.execute(
        "SELECT count(*) FROM image_prompts WHERE image_id IN ("
        "   SELECT image_id FROM raw_images WHERE category = %s AND status = 'ok')",
        (category,),
    )
    return row.fetchone()[0]


def text_vector_stats(conn: psycopg.Connection, category: str, model: str) -> dict[str, float]:
    """Counts and norms of the vectors from sentence encoder `model` of the texts of the
    category's images, for the asset check (`embedded`: texts with a vector of that text)."""
    row = conn.execute(
        f"""
        SELECT count(*), count(e.image_id),
               min(vector_dims(e.embedding)), max(vector_dims(e.embedding)),
               min(vector_norm(e.embedding)), max(vector_norm(e.embedding))
        FROM image_prompts p
        LEFT JOIN prompt_embeddings e
          ON e.image_id = p.image_id AND e.model = %(model)s AND e.prompt_model = p.model
         AND e.source = p.source AND e.text_sha = {TEXT_SHA}
        WHERE p.image_id IN (SELECT image_id FROM raw_images
                             WHERE category = %(category)s AND status = 'ok')
        """,
        {"category": category, "model": model},
    ).fetchone()
    keys = ("texts", "embedded", "min_dim", "max_dim", "min_norm", "max_norm")
    return dict(zip(keys, row, strict=True))
