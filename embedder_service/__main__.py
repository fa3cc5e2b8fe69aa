"""Runs the embedder server: python -m embedder_service (configured by environment variables)."""

from embedder_service.server import main

if __name__ == "__main__":
    main()
