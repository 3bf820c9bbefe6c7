"""Ingest: sources behind one interface, per-row and window quality rules, bars from ticks,
the expectation suite, and the bronze and silver layers."""
