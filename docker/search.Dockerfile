# syntax=docker/dockerfile:1
# The search service: vectors in RediSearch over gRPC (port 50052). Needs a Redis 8 (or Redis Stack)
# server, given by REDIS_URL.
# Build from the repository root: docker build -f docker/search.Dockerfile -t clipsearch-search .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 clipsearch \
    && useradd --system --uid 10001 --gid clipsearch --create-home --home-dir /home/clipsearch clipsearch

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY clipsearch ./clipsearch
COPY search_service ./search_service
RUN pip install -c constraints.txt '.[search]' \
    && cd / && python -c "import redis, search_service.server"
COPY --chmod=0755 docker/grpc_health_check.py /usr/local/bin/grpc-health-check

USER clipsearch
WORKDIR /home/clipsearch
ENV SEARCH_HOST=0.0.0.0 \
    SEARCH_PORT=50052 \
    REDIS_URL=redis://redis:6379
EXPOSE 50052
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD grpc-health-check "127.0.0.1:${SEARCH_PORT}" clipsearch.v1.Search
CMD ["python", "-m", "search_service"]
