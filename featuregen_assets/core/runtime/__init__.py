"""What a running step needs whatever its domain: state paths, progress lines, row checkpoints,
process checks, model loading without progress bars."""
