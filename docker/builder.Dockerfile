# syntax=docker/dockerfile:1
# The image of qmo's build and eval Jobs: the TensorRT-LLM release image plus qmo's builder
# extra. The tag matches DEFAULT_ENGINE_IMAGE in operator/qmo/api/quantizedmodel.py, so an
# engine is built with the same TensorRT-LLM that serves it.
# Build from the repository root:
#   docker build -f docker/builder.Dockerfile -t ghcr.io/qmo-dev/qmo-builder:0.1.0 .

FROM nvcr.io/nvidia/tensorrt-llm/release:1.2.1
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/qmo
COPY pyproject.toml README.md ./
COPY operator ./operator
# Pin what the base image already has (tensorrt-llm, torch, modelopt, ...) as constraints, so
# installing '.[builder]' adds qmo and what is missing without re-pulling or replacing them.
RUN pip list --format=freeze > /tmp/base-image.txt \
 && pip install --no-cache-dir --constraint /tmp/base-image.txt '.[builder]' \
 && rm -rf /tmp/base-image.txt
# A non-root user with a writable home (Hugging Face and ModelOpt caches go there).
RUN useradd --uid 65532 --user-group --create-home --home-dir /home/qmo qmo
ENV HOME=/home/qmo
USER 65532:65532
WORKDIR /home/qmo
# Build Jobs run `qmo-builder build`; eval Jobs override the command with `qmo-eval`.
ENTRYPOINT ["qmo-builder"]
CMD ["build"]
