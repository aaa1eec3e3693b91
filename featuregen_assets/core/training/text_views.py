"""Partial and reordered views of a caption, to train a text encoder on more than whole captions.

A caption such as "a large red circle at the top left and a small blue square at the centre,
in a restaurant" is cut into clauses at commas and "and". Its views: each clause alone, each
clause's head without its place ("a large red circle"), the head with one modifier dropped
("a red circle", "a large circle", with and without the place), the clauses but the last
(no category phrase) and those clauses in reverse order before the last. An encoder trained only on
whole captions learns that every query ends in a category phrase and misranks a query for
one object; trained on views it finds the images a partial query describes.
"""

from __future__ import annotations

import re

_CLAUSE = re.compile(r"\s*,\s*|\s+and\s+")
_PLACE = re.compile(r"\s+(?=(?:at|in|on|near|beside|behind|above|below)\s)")
_ARTICLES = ("a", "an", "the")


def clauses(caption: str) -> list[str]:
    """The caption's clauses: cut at commas and at "and"."""
    return [c for c in _CLAUSE.split(caption.strip()) if c]


def text_views(caption: str) -> list[str]:
    """Distinct partial and reordered views of `caption`, the caption itself excluded."""
    parts = clauses(caption)
    views: list[str] = []
    for clause in parts:
        views.append(clause)
        pieces = _PLACE.split(clause, maxsplit=1)
        head, place = pieces[0], (" " + pieces[1] if len(pieces) > 1 else "")
        if place:
            views.append(head)
        words = head.split()
        if len(words) >= 3 and words[0].lower() in _ARTICLES:
            for drop in range(1, len(words) - 1):
                shorter = " ".join(words[:drop] + words[drop + 1 :])
                views += [shorter, shorter + place] if place else [shorter]
    if len(parts) > 1:
        *objects, last = parts
        views.append(" and ".join(objects))
        views.append(", ".join([" and ".join(reversed(objects)), last]))
    return [v for v in dict.fromkeys(views) if v and v != caption]
