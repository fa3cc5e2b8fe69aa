"""The search service: item vectors and metadata in Redis, nearest-neighbour queries through RediSearch."""
