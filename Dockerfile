# The image of the four services (and of the Redis bootstrap Job and repair init container):
#   docker build -t <registry>/courseredis:<version> .
#   docker run <image> courseredis-service gateway --host 0.0.0.0 --port 8000
# It cannot be built on the project's CI machines (no Docker engine); keep it conventional.

# --- build: resolve the locked dependencies into a virtual environment -----------------
FROM python:3.11.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.5.31 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

# --- smoke: the post-deploy smoke suite, run from where the deployment's names resolve ---
#   docker build --target smoke -t <registry>/courseredis-smoke:<version> .
#   docker run --env SMOKE_... <image> [pytest arguments]   (what `make smoke` runs)
# It needs kubectl on PATH (Secrets, pods' nodeName, testinfra's exec); the image has none.
FROM build AS smoke
COPY smoke ./smoke
COPY infra ./infra
COPY Pulumi.yaml Pulumi.*.yaml ./
# Editable on purpose: courseredis finds Pulumi.<env>.yaml beside its source tree (REPO_ROOT).
RUN uv sync --frozen --no-dev --group smoke
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 999:999
ENTRYPOINT ["python", "-m", "smoke"]
CMD []

# --- run: the environment and nothing else, as a non-root user -------------------------
FROM python:3.11.11-slim-bookworm
# UID 999 matches the charts' runAsUser, which also owns the Redis data volume.
RUN groupadd --system --gid 999 app && useradd --system --uid 999 --gid app app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 999:999
EXPOSE 8000
ENTRYPOINT []
CMD ["courseredis-service", "gateway", "--host", "0.0.0.0", "--port", "8000"]
