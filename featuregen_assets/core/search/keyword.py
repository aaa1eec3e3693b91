"""Keyword search: PostgreSQL full text over generated prompts and link captions."""

from __future__ import annotations

import psycopg

# plainto_tsquery ANDs the stems ('red' & 'circl'); a stem cannot hold " & ", so swapping the
# operator in its text form makes the same query with OR.
_ANY_WORD = "replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')::tsquery"
# ts_rank_cd normalisation 32: rank / (rank + 1), a score in [0, 1).
_RANK = "ts_rank_cd(p.search, q.query, 32)"


def keyword_ranked(
    conn: psycopg.Connection,
    text: str,
    *,
    limit: int,
    category: str | None = None,
    after: tuple[float, str] | None = None,
) -> list[tuple[str, float]]:
    """The best `limit` images (id, score) whose prompts or link captions hold any word of
    `text` (English stems, stop words ignored), best first, ties by id.

    An image's score is its best-matching prompt's cover-density rank, in [0, 1): more of the
    words, closer together, rank higher. ``after``
    (negated score, id) keeps only what ranks after it: the next page of a keyset cursor.
    """
    in_category = "AND c.category = %(category)s" if category else ""
    having = (
        f"HAVING (-max({_RANK})::float8, p.image_id) > (%(after_key)s::float8, %(after_id)s::text)"
        if after
        else ""
    )
    statement = f"""
        SELECT p.image_id, max({_RANK})::float8 AS score
        FROM image_prompts p, (SELECT {_ANY_WORD} AS query) q
        WHERE p.search @@ q.query
          AND EXISTS (SELECT 1 FROM raw_images c WHERE c.image_id = p.image_id
                      AND c.status = 'ok' {in_category})
        GROUP BY p.image_id
        {having}
        ORDER BY score DESC, p.image_id
        LIMIT %(limit)s
    """
    params = {
        "text": text,
        "limit": limit,
        "category": category,
        "after_key": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    return [(r[0], float(r[1])) for r in conn.execute(statement, params).fetchall()]
