"""Vision models: image preprocessing, the DINOv2 embedder, the Qwen2-VL captioner, their
device and loader settings, model resolution and the GPU input path."""
