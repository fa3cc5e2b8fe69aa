"""The embedder service: CLIP image and text vectors and zero-shot labels over gRPC."""
