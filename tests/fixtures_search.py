"""Pytest fixtures for the search tests."""
