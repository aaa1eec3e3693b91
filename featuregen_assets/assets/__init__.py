"""Dagster wiring of the platform, one folder per domain (ingest, features, models).

Each asset, its checks, sensors and Dagster-side helpers live beside each other; the logic
they call is in `featuregen_assets.core`. `featuregen_assets.definitions` wires them all.
"""
