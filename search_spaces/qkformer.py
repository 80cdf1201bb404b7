"""qkformer family (being written)."""
