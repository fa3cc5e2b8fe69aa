# syntax=docker/dockerfile:1
# The clipsearch command line, without torch: talks to the embedder and search services over gRPC.
# Build from the repository root: docker build -f docker/client.Dockerfile -t clipsearch-cli .
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
COPY client ./client
RUN pip install -c constraints.txt '.[web]' \
    && clipsearch --help > /dev/null

USER clipsearch
WORKDIR /home/clipsearch
ENTRYPOINT ["clipsearch"]
CMD ["--help"]
