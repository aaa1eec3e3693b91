"""Storage and search: PostgreSQL connections and migrations (the only DDL), bulk table
writes, feature-store queries, the trained-model registry, nearest-neighbour and full-text
queries, summaries."""
