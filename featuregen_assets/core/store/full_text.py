"""Keyword search's query: PostgreSQL full text over generated prompts and link captions.
The prompts of a random-weight captioner (the tiny profile's, model keys `tiny/...`: noise)
match only when asked for (``random_prompts``), as in caption search."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

# ts_rank_cd normalisation 32: rank / (rank + 1), a score in [0, 1).
_RANK = "ts_rank_cd(p.search, q.query, 32)"
# Which prompts may match: with %(random)s false, none of a tiny (random-weight) captioner's
# (`core.vision.model_profiles.TINY_ID_PREFIX`; % doubled for the query's parameters).
MATCHING = "p.search @@ q.query AND (%(random)s OR p.model NOT LIKE 'tiny/%%')"


def keyword_ranked(
    conn: psycopg.Connection,
    text: str,
    *,
    limit: int,
    category: str | None = None,
    after: tuple[float, str] | None = None,
    random_prompts: bool = False,
) -> list[tuple[str, float]]:
    """The best `limit` images (id, score) whose prompts or link captions match `text`, best
    first, ties by id. Web-search syntax: every word (English stems, stop words ignored),
    "a quoted phrase", `or`, `-word`.

    An image's score is its best-matching prompt's cover-density rank, in [0, 1). Every match
    is ranked, so the cost grows with the number of matching prompts. Without a category,
    whether an image is still stored (status ok) is checked for the best few only, after
    ranking (twice `limit`, more while too few are). ``after`` (negated score, id) keeps only
    what ranks after it: the next page of a keyset cursor.
    """
    fetch = 2 * limit
    while True:
        found = _ranked(conn, text, fetch, category, after, random_prompts)
        kept = found if category else _still_stored(conn, found)
        if len(kept) >= limit or len(found) < fetch:
            return kept[:limit]
        fetch *= 4


def keyword_ranked_scopes(
    conn: psycopg.Connection,
    text: str,
    scopes: Sequence[tuple[int, str | None]],
    random_prompts: bool = False,
) -> dict[tuple[int, str | None], list[tuple[str, float]]]:
    """`keyword_ranked` for several (limit, category) scopes of one query, every match ranked
    once: what a category's first page needs beside its facets' unfiltered list. When every
    scope has a category, only the matches in those categories are ranked (a category's
    page alone, ~11 % of 100,000 images, ~2,500 matches: about a quarter less time)."""
    categories = [category for _, category in scopes]
    ranked = []
    params: dict = {"text": text, "random": random_prompts, "categories": categories}
    in_scopes = "" if None in categories else f"AND {_stored_in('p', 'ANY(%(categories)s)')}"
    for i, (limit, category) in enumerate(scopes):
        params[f"limit{i}"] = 2 * limit if category is None else limit
        params[f"category{i}"] = category
        where = sql.SQL(f"WHERE {_stored_in('r', f'%(category{i})s')}" if category else "")
        ranked.append(
            sql.SQL(
                "(SELECT {i} AS scope, r.image_id, r.score FROM ranked r {where}"
                " ORDER BY r.score DESC, r.image_id LIMIT {limit})"
            ).format(i=sql.Literal(i), where=where, limit=sql.Placeholder(f"limit{i}"))
        )
    statement = sql.SQL(
        """
        WITH ranked AS MATERIALIZED (
            SELECT p.image_id, max({rank})::float8 AS score
            FROM image_prompts p, websearch_to_tsquery('english', %(text)s) AS q(query)
            WHERE {matching} {in_scopes}
            GROUP BY p.image_id
        )
        {ranked}
        """
    ).format(
        rank=sql.SQL(_RANK),
        matching=sql.SQL(MATCHING),
        in_scopes=sql.SQL(in_scopes),
        ranked=sql.SQL(" UNION ALL ").join(ranked),
    )
    found: list[list[tuple[str, float]]] = [[] for _ in scopes]
    for scope, image_id, score in conn.execute(statement, params).fetchall():
        found[scope].append((image_id, float(score)))
    out = {}
    for (limit, category), rows in zip(scopes, found, strict=True):
        kept = rows if category else _still_stored(conn, rows)
        if len(kept) < limit and len(rows) == 2 * limit and category is None:
            kept = keyword_ranked(conn, text, limit=limit, random_prompts=random_prompts)
        out[(limit, category)] = sorted(kept, key=lambda pair: (-pair[1], pair[0]))[:limit]
    return out


def keyword_matches(
    conn: psycopg.Connection, text: str, category: str | None, random_prompts: bool = False
) -> int:
    """How many stored images (in ``category``, if given) have a text that matches ``text``."""
    (count,) = conn.execute(
        f"""
        SELECT count(DISTINCT p.image_id)
        FROM image_prompts p, websearch_to_tsquery('english', %(text)s) AS q(query)
        WHERE {MATCHING} AND {_stored_in("p", "coalesce(%(category)s, c.category)")}
        """,
        {"text": text, "category": category, "random": random_prompts},
    ).fetchone()
    return count


def has_search_terms(conn: psycopg.Connection, text: str) -> bool:
    """Whether ``text`` leaves any term to match once PostgreSQL's English configuration has
    dropped its stop words ("the", "a") and punctuation."""
    (terms,) = conn.execute(
        "SELECT numnode(websearch_to_tsquery('english', %s))", (text,)
    ).fetchone()
    return terms > 0


def _ranked(conn, text, limit, category, after, random_prompts) -> list[tuple[str, float]]:
    """The best ``limit`` matches; with a category, only stored images of that category."""
    in_category = f"AND {_stored_in('p', '%(category)s')}" if category else ""
    having = (
        f"HAVING (-max({_RANK})::float8, p.image_id) > (%(after_key)s::float8, %(after_id)s::text)"
        if after
        else ""
    )
    statement = f"""
        SELECT p.image_id, max({_RANK})::float8 AS score
        FROM image_prompts p, websearch_to_tsquery('english', %(text)s) AS q(query)
        WHERE {MATCHING} {in_category}
        GROUP BY p.image_id
        {having}
        ORDER BY score DESC, p.image_id
        LIMIT %(limit)s
    """
    params = {
        "text": text,
        "random": random_prompts,
        "limit": limit,
        "category": category,
        "after_key": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    return [(r[0], float(r[1])) for r in conn.execute(statement, params).fetchall()]


def _stored_in(alias: str, category: str) -> str:
    """SQL: the image of row ``alias`` has a stored (status ok) file in ``category`` (SQL)."""
    return (
        f"EXISTS (SELECT 1 FROM raw_images c WHERE c.image_id = {alias}.image_id"
        f" AND c.status = 'ok' AND c.category = {category})"
    )


def _still_stored(conn, found: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """``found`` without the images no longer stored (no raw_images row with status ok)."""
    rows = conn.execute(
        "SELECT DISTINCT image_id FROM raw_images WHERE image_id = ANY(%s) AND status = 'ok'",
        ([image_id for image_id, _ in found],),
    ).fetchall()
    stored = {image_id for (image_id,) in rows}
    return [pair for pair in found if pair[0] in stored]
