"""The REST/WebSocket API, its keys and the live trading page (``python -m streaming api``)."""
