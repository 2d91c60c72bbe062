"""Dataset format, synthetic generator, importers, loaders and DVC operations."""
