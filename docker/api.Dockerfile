# The reward API in front of the Celery farm: FastAPI + uvicorn, no Blender (programs run on
# the workers). Build from the repository root:
#   docker build -f docker/api.Dockerfile -t llm3d-api .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

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
    && pip install --no-cache-dir ".[metrics,farm]" \
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
ENV LLM3D_API__HOST=0.0.0.0 \
    LLM3D_API__PORT=8000 \
    LLM3D_API__BACKEND=celery \
    LLM3D_FARM__REDIS_URL=redis://redis:6379/0
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=10s --start-period=20s --retries=3 \
    CMD ["llm3d", "health"]

CMD ["llm3d", "serve"]

# scripts/compose_smoke.sh prunes untagged images by this label
LABEL org.llm3d.image="api"
