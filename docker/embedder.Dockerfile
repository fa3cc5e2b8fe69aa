# syntax=docker/dockerfile:1
# The embedder service: CLIP image and text vectors over gRPC (port 50051), on the CPU build of torch, with
# OpenVINO and ONNX Runtime (the fast extra) for EMBEDDER_RUNTIME=auto to pick on a CPU.
# Build from the repository root: docker build -f docker/embedder.Dockerfile -t clipsearch-embedder .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

# PyPI's Linux torch wheel pulls gigabytes of CUDA libraries; the CPU build of the same release comes from
# PyTorch's index. Its public version must equal the torch pin in constraints.txt.
ARG TORCH_VERSION=2.13.0+cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 clipsearch \
    && useradd --system --uid 10001 --gid clipsearch --create-home --home-dir /home/clipsearch clipsearch \
    && install -d -o clipsearch -g clipsearch /var/cache/clipsearch/huggingface /var/cache/clipsearch/models

WORKDIR /src
# torch alone first (its dependencies come pinned with the project below), so this large layer stays
# cached while the code changes.
RUN pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY pyproject.toml constraints.txt README.md ./
COPY clipsearch ./clipsearch
COPY embedder_service ./embedder_service
RUN pip install -c constraints.txt '.[fast]' \
    && cd / && python -c "import torch, transformers, openvino, onnxruntime, nncf, embedder_service.server"
COPY --chmod=0755 docker/grpc_health_check.py /usr/local/bin/grpc-health-check

USER clipsearch
WORKDIR /home/clipsearch
# The model cache and the models converted for OpenVINO / ONNX Runtime: mount volumes there so the weights
# are fetched, and converted, once rather than on every start.
ENV HF_HOME=/var/cache/clipsearch/huggingface \
    EMBEDDER_CACHE_DIR=/var/cache/clipsearch/models \
    CLIP_MODEL=openai/clip-vit-base-patch16 \
    EMBEDDER_HOST=0.0.0.0 \
    EMBEDDER_PORT=50051
EXPOSE 50051
# The first start downloads the model (about 600 MB), hence the long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD grpc-health-check "127.0.0.1:${EMBEDDER_PORT}" clipsearch.v1.Embedder
CMD ["python", "-m", "embedder_service"]
