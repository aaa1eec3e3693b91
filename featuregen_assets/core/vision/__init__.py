"""Vision models: image preprocessing, the DINOv2 embedder, the Qwen2-VL captioner, their
device and loader settings, the model roles and their choice (`model_profiles`: every role's,
the sentence encoder's too) and the GPU input path."""
