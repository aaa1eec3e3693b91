"""Ingest: link files → validated image files in the content-addressed store and `raw_images` rows.

Network policy, transport, one link's fetch, the download run loop, image validation, the
store and its verification against the tables (store_check), link-file parsing."""
