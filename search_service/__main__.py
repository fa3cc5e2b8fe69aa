"""Runs the search service: python -m search_service (configured by environment variables, see config.py)."""

from search_service.server import main

main()
