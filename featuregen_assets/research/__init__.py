"""The research comparison: every text-to-image and decoder method beside fair baselines.

Given the stored vectors, captions and categories, a recorded train / validation / test split
and query sets with their truth, it scores the trained text encoder and decoder against
non-learned baselines (chance, category oracle, keyword search, TF-IDF nearest captions,
caption embeddings from a pretrained sentence encoder, nearest training image, category
mean) on the same test gallery, with 95 % bootstrap intervals over queries, beside positive
controls (dense probes, the decoder) and, with scene records, what the vectors hold of what a
caption names (truth read-outs, attribute probes); it writes one row per measurement.
No Dagster here; the `research_report` asset wires it.
"""
