"""Backtesting: the shared trading rules, the vectorized engine, its event-by-event reference, metrics."""
