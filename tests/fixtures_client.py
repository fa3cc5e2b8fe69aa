"""Pytest fixtures for the client tests."""
