"""Shared pytest configuration: each component's fixtures live in its own plugin module."""

pytest_plugins = ["tests.fixtures_embedder", "tests.fixtures_search", "tests.fixtures_client", "tests.fixtures_e2e"]
