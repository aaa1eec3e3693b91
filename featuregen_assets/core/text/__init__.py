"""Text models: the pretrained sentence encoder that turns image texts (link captions,
generated prompts) and search queries into vectors of one space."""
