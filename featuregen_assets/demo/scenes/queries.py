"""Queries with their truth: the captions' phrasing, a second phrasing no caption uses,
partial queries, and the examples the tiny models answer."""

from __future__ import annotations

from collections.abc import Sequence

from featuregen_assets.demo.scenes.truth import HELD_OUT_COMBINATIONS, Scene

# A second phrasing: its content words (colours, shapes, sizes, places, categories) never occur
# in a training caption, so a query in it tests what an encoder understands, not what it read.
PARAPHRASE_COLOURS = {
    "red": "crimson",
    "green": "emerald",
    "blue": "navy",
    "yellow": "golden",
    "purple": "violet",
    "orange": "amber",
    "white": "ivory",
    "black": "jet",
}
PARAPHRASE_SHAPES = {
    "circle": "disc",
    "square": "block",
    "triangle": "wedge",
    "star": "pentagram",
    "cross": "plus",
    "ring": "hoop",
}
PARAPHRASE_SIZES = {"small": "little", "large": "big"}
PARAPHRASE_POSITIONS = {
    "top left": "upper left corner",
    "top right": "upper right corner",
    "bottom left": "lower left corner",
    "bottom right": "lower right corner",
    "centre": "middle",
}
PARAPHRASE_CATEGORIES = {
    "city_street": "on an urban road",
    "shop": "inside a store",
    "supermarket": "inside a grocery",
    "restaurant": "inside a diner",
    "cafe": "inside a coffeehouse",
    "bank": "inside a teller hall",
    "fight": "during a brawl",
    "shoplifting": "during a theft",
    "road_accident": "at a car crash",
}
QUERY_SETS = ("template", "paraphrase", "partial_object", "partial_attribute")


def paraphrase(scene: Scene) -> str:
    """The scene in the second phrasing: "big crimson disc in the upper left corner, ..."."""
    phrases = [
        f"{PARAPHRASE_SIZES[o.size]} {PARAPHRASE_COLOURS[o.colour]} "
        f"{PARAPHRASE_SHAPES[o.shape]} in the {PARAPHRASE_POSITIONS[o.position]}"
        for o in scene.objects
    ]
    return f"{' plus '.join(phrases)}, {PARAPHRASE_CATEGORIES[scene.category]}"


def _holders(scenes: Sequence[Scene], match) -> list[str]:
    return [s.name for s in scenes if any(match(o) for o in s.objects)]


def scene_queries(scenes: Sequence[Scene]) -> list[dict]:
    """Queries with their truth, one of each set per scene (by name; positives by name).

    template: the caption (positives: scenes with that caption); paraphrase: the second
    phrasing; partial_object: one object's phrase, no category ("a large red circle at the
    top left"; positives: every scene with that object); partial_attribute: colour and shape
    only ("a red circle"). `matches`: scenes holding every colour-shape pair the query names
    (for attribute-match precision); `hard_negative`: the attribute-swap twin, if any.
    `compositional`: the query names a held-out combination.
    """
    twins = {s.swap_of: s.name for s in scenes if s.swap_of}
    twins.update({s.name: s.swap_of for s in scenes if s.swap_of})
    by_caption: dict[str, list[str]] = {}
    for s in scenes:
        by_caption.setdefault(s.caption, []).append(s.name)
    pairs = {s.name: {(o.colour, o.shape) for o in s.objects} for s in scenes}

    def matches(wanted: set[tuple[str, str]]) -> list[str]:
        return [name for name, have in pairs.items() if wanted <= have]

    queries = []
    for s in scenes:
        first = s.objects[0]
        common = {"scene": s.name, "category": s.category, "hard_negative": twins.get(s.name)}
        entries = [
            ("template", s.caption, by_caption[s.caption], pairs[s.name]),
            ("paraphrase", paraphrase(s), by_caption[s.caption], pairs[s.name]),
            ("partial_object", first.phrase, _holders(scenes, first.__eq__), None),
            (
                "partial_attribute",
                f"a {first.colour} {first.shape}",
                _holders(scenes, lambda o, f=first: (o.colour, o.shape) == (f.colour, f.shape)),
                {(first.colour, first.shape)},
            ),
        ]
        for query_set, text, positives, wanted in entries:
            if query_set == "partial_object":
                positives = _holders(
                    scenes,
                    lambda o, f=first: (
                        (o.shape, o.colour, o.size, o.position)
                        == (f.shape, f.colour, f.size, f.position)
                    ),
                )
                wanted = {(first.colour, first.shape)}
            queries.append(
                {
                    **common,
                    "query_set": query_set,
                    "query": text,
                    "positives": positives,
                    "matches": matches(wanted),
                    "compositional": any(p in s.caption for p in HELD_OUT_COMBINATIONS)
                    and query_set in ("template", "paraphrase"),
                }
            )
    return queries


def example_queries(scenes: Sequence[Scene]) -> list[tuple[str, list[str]]]:
    """Two partial queries, without a category phrase, that the tiny models' data answers, each
    with the names of the scenes it should find: one large object's size, colour and shape
    ("a large red circle" when a scene holds one, else the first large object), then its
    colour and shape alone. Place is what the tiny DINOv2 keeps least (docs/models.md)."""
    objects = [o for s in scenes for o in s.objects]
    large = [o for o in objects if o.size == "large"] or objects
    obj = next((o for o in large if (o.colour, o.shape) == ("red", "circle")), large[0])
    return [
        (
            f"a {obj.size} {obj.colour} {obj.shape}",
            _holders(
                scenes, lambda o: (o.size, o.colour, o.shape) == (obj.size, obj.colour, obj.shape)
            ),
        ),
        (
            f"a {obj.colour} {obj.shape}",
            _holders(scenes, lambda o: (o.colour, o.shape) == (obj.colour, obj.shape)),
        ),
    ]
