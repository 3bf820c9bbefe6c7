"""Models: torch networks, baselines, training, MLflow tracking, registry and promotion."""
