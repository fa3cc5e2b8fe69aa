"""Fixtures and helpers the test tiers share; tests/conftest.py registers the fixture modules as plugins."""
