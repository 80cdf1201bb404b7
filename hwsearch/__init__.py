"""hwsearch."""
