"""Limits and defaults of the Search API (search.proto), shared by the search service and the client."""

from __future__ import annotations

MAX_BATCH = 1000  # items per Upsert
MAX_IDS = 1000  # ids per Get or Delete; sources per Delete
MAX_ID_BYTES = 256
MAX_SOURCE_BYTES = 4096  # one source URI
MAX_TAG_BYTES = 256  # one tag, UTF-8
MAX_COLLECTION_BYTES = 128  # a collection name, UTF-8
MAX_CONTENT_HASH_CHARS = 128
DEFAULT_COLLECTION = "default"  # the collection of an item whose collection is empty
DEFAULT_K = 10  # matches per Query when k is 0
MAX_K = 1000
MAX_WINDOW = 10_000  # offset + k
MAX_EF_RUNTIME = 100_000
MAX_DIMENSION = 32768  # of an index: SEARCH_DIM, or the model a reindex embeds with
DEFAULT_PAGE_SIZE = 100  # items per List page when page_size is 0
MAX_PAGE_SIZE = 1000
