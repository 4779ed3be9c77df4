# The reward farm's Celery worker: Blender 4.2 as a Python module (bpy), the sandboxed
# executor and the metrics. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t llm3d-worker .
# Run with compose (compose.yaml) or: docker run -e LLM3D_FARM__REDIS_URL=redis://host:6379/0 llm3d-worker
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The shared libraries the bpy wheel loads (the same list as .github/workflows/ci.yml and
# worker/farm/modal_app.py BPY_APT_PACKAGES; tests/docker keeps the three equal).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libx11-6 libxrender1 libxxf86vm1 libxfixes3 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 llm3d \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin llm3d
WORKDIR /app

# What the image contains comes from pyproject.toml alone (its dependencies and the extras
# named here; tests/docker/test_image_env.py scores the hard cases in a venv made from exactly
# this). First the dependencies, with empty stubs of the package and README.md, so that this
# layer (bpy is ~520 MB) is rebuilt only when pyproject.toml changes; then the code on top.
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN mkdir llm3d && touch llm3d/__init__.py README.md \
    && pip install --no-cache-dir ".[blender,metrics,farm]" \
    && pip uninstall --yes llm3d \
    && rm -rf llm3d build README.md
COPY README.md ./
COPY llm3d ./llm3d
COPY bpy_lib ./bpy_lib
COPY worker ./worker
COPY api ./api
COPY configs ./configs
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps . && rm -rf build

USER 10001:10001
ENV LLM3D_FARM__REDIS_URL=redis://redis:6379/0 \
    LLM3D_FARM__CONCURRENCY=2

HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["llm3d", "health", "--workers"]

CMD ["llm3d", "worker"]

# scripts/compose_smoke.sh prunes untagged images by this label
LABEL org.llm3d.image="worker"
