"""spikformer family (being written)."""
