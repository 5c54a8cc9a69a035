# syntax=docker/dockerfile:1
# The image of qmo's eval Jobs: `qmo-eval` with lm-evaluation-harness (its OpenAI-compatible
# API models only: no torch, no GPU). Eval Jobs call the variants' Services over HTTP.
# Build from the repository root:
#   docker build -f docker/evaluator.Dockerfile -t ghcr.io/qmo-dev/qmo-evaluator:0.1.0 .

FROM python:3.11.13-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/*.whl)[evaluator]" && rm -rf /wheels
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["qmo-eval"]
CMD ["run", "--help"]
