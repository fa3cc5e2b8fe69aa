"""Pytest fixtures for the embedder tests."""
