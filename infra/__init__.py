"""Installs and runs the platform's local services: ``python -m infra up|status|down``."""
