# syntax=docker/dockerfile:1
# hami-mig node agent image: `docker build -t hami-mig:0.1.0 .`
#
# The image runs as an unprivileged user by default (fine for `hami-mig plan` and the simulator).
# The Helm chart's DaemonSet overrides that with runAsUser 0 and privileged (or CAP_SYS_ADMIN):
# creating/destroying MIG instances needs CAP_SYS_ADMIN and the root-only MIG config capability
# device /dev/nvidia-caps/nvidia-cap1, and the kubelet's device-plugin socket directory is
# root-owned. See charts/hami-mig/README.md.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# README.md* : optional, the long description when the repository has one.
COPY pyproject.toml README.md* ./
COPY hami_mig ./hami_mig
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="hami-mig" \
      org.opencontainers.image.description="HAMi-compatible dynamic-MIG device plugin: advertises nvidia.com/gpu and reshapes MIG instances through NVML" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="hami-mig developers" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
COPY --from=builder /dist/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && groupadd --system --gid 10001 hami-mig \
    && useradd --system --uid 10001 --gid hami-mig --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin hami-mig
USER 10001:10001
EXPOSE 31993
# Docker only (Kubernetes uses the chart's probes): the agent's /healthz on its metrics port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:31993/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["hami-mig"]
CMD ["device-plugin"]
