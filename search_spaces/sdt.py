"""sdt family (being written)."""
