"""Market data sources: the built-in synthetic market, files, and a small real sample."""
