"""Model wiring: the trained `aligned_text_encoder` and `decoder_model`, and the helper that
saves, versions and registers what they train."""
