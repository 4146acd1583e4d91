"""The convert tests use the shared tiny models (``tiny_models`` in tests/conftest.py)."""
