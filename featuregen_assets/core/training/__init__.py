"""Training and evaluation: the aligned text encoder, the decoder, their shared loop pieces,
training data read from the tables, splits, metrics, dense probes and plots."""
