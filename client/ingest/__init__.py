"""The ingest engine: walking, decoding and embedding files into the index, pruning, and reindexing."""
