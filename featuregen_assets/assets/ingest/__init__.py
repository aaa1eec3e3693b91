"""Ingest wiring: `raw_images`, the `link_file_sensor` that feeds it, its download check."""
