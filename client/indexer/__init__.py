"""The indexer: keeps the libraries indexed (`clipsearch watch`, run by `clipsearch serve`)."""

from .indexer import Indexer, IndexerOptions, LibraryWork

__all__ = ["Indexer", "IndexerOptions", "LibraryWork"]
