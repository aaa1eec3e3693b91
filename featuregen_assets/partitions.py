"""Partitions: one per search category, added as link files appear."""

import dagster as dg

category_partitions = dg.DynamicPartitionsDefinition(name="category")
