# syntax=docker/dockerfile:1
# The qmo operator: `qmo run`. Slim, non-root, nothing but the wheel and its dependencies.
# Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/qmo-dev/qmo-operator:0.1.0 .

FROM python:3.11.13-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.13-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /wheels /wheels
# The store extra: the operator collects garbage on an object store itself (qmo.controller.store_gc).
RUN pip install --no-cache-dir "$(ls /wheels/*.whl)[store]" && rm -rf /wheels
# 65532 is the conventional "nonroot" uid; the chart sets the same in its securityContext.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["qmo", "run"]
