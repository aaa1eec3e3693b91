"""The research harness, beside production code: every text-to-image and decoder method
beside fair baselines, with intervals, and the answers they support.

Given the stored vectors, captions and categories, a recorded train / validation / test split
and query sets with their truth, it scores the trained text encoder and decoder against
non-learned baselines (chance, category oracle, keyword search, TF-IDF nearest captions,
caption embeddings from a pretrained sentence encoder, nearest training image, category
mean) on the same test gallery, with 95 % bootstrap intervals over queries, beside positive
controls (dense probes, the decoder) and, with scene records, what the vectors hold of what a
caption names (truth read-outs, attribute probes); it writes one row per measurement.

Modules, by what they answer:
- the run and its output: comparison (reads the store, runs every part once), measurements
  (the rows), stats and paired (intervals, paired differences), report (report.md/.json),
  answers and answer_text (the answers: verdicts, then their wording), weights (what the
  weights license);
- question 1, text to image: queries, text_baselines, sentence_encoder, text_to_image,
  variant_names and variants (learned variants), served_modes (the search service's modes),
  vector_content and learned_ceiling (why the encoder stops where it does);
- question 2, decoding: decoding, patch_grids, dense (dense probes);
- standard protocols for real weights: protocols (Karpathy COCO / Flickr30k), ade20k.

It imports core, never Dagster, the settings or the home's layout: every input (the query
file, masks, scene records, where patch grids go) comes as an argument. The `research_report`
asset and `protocol_report.py` wire it.
"""
