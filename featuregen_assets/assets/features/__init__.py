"""Feature wiring: `image_embeddings` and `image_prompts` (the checkpointed model steps that
write through the pgvector IO manager) and their checks."""
