"""Search over the feature store, shared by the HTTP API, the CLI and Python callers.

One engine (`engine.Searcher`), one hit schema (`hits.Hit`). A text query is answered in a mode
(`modes`): caption (sentence vectors of the images' texts, `core.store.nearest`), image
(the aligned text encoder over the DINOv2 vectors, `core.store.nearest`), keyword (PostgreSQL
full text, `core.store.full_text`) or hybrid (weighted reciprocal-rank fusion of every list
with a weight, `lists`, `fusion`); the default mode and hybrid's weights are what the stored
report measured best (`default_mode`).
Other queries: a stored image's id, an uploaded image, a raw vector. Every answer carries
facets, a total, a keyset cursor (`cursor`), timings, the model versions used and, per hit,
why it came. Plain Python: the connection and the models arrive as arguments.
"""
