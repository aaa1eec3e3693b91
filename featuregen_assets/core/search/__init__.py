"""Search over the feature store, shared by the HTTP API, the CLI and Python callers.

One hit schema (`hits.Hit`) for every way of asking: text through the newest aligned text
encoder, an uploaded image through the DINOv2 embedder, a stored image's id, a raw vector
(all nearest-neighbour queries over pgvector, `core.store.search`), keyword (PostgreSQL full
text over generated prompts and link captions, `keyword`) and hybrid (reciprocal-rank fusion
of the two lists, `fusion`). Every answer carries facets, a keyset cursor (`cursor`) and
timings. Plain Python: the connection and the models arrive as arguments (`engine`).
"""
