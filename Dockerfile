# labelwise serve on a CPU, as a non-root user. Build (docs/deployment.md, "Container"):
#   labelwise export --params_path checkpoint --output_path export --quantize int8
#   docker build -t labelwise --build-arg MODEL=export .          # the export baked into the image
#   docker build -t labelwise .                                   # or none: mount one at /model at run time
#   docker run -p 8189:8189 -e LABELWISE_API_KEY=... [-v $PWD/export:/model:ro] labelwise
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG MODEL=
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1

RUN useradd --create-home --uid 10001 labelwise
WORKDIR /app
# the CPU build of torch first: a bare torch requirement would pull a multi-GB CUDA build
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[onnx,serve]"

# MODEL: a folder of the build context (an export or a checkpoint), copied to /model; empty: mount one there
COPY ${MODEL:-Dockerfile} /tmp/model
RUN if [ -n "${MODEL}" ]; then mv /tmp/model /model; else rm -rf /tmp/model && mkdir /model; fi \
    && chown -R labelwise /model
USER labelwise

EXPOSE 8189
# liveness: the process answers; readiness (/health/ready) is for the orchestrator's traffic decision
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8189/health/live', timeout=4)"
CMD ["labelwise", "serve", "--model_path", "/model", "--host", "0.0.0.0", "--port", "8189"]
