# syntax=docker/dockerfile:1
# One image for every role: `tradestack serve api|engine|marketdata`, `tradestack up`, `tradestack db upgrade`.
# Build: docker build -t tradestack:$(git rev-parse --short HEAD) --build-arg GIT_SHA=$(git rev-parse HEAD) .

# -- build: resolve the locked dependencies into a virtual environment ---------------------------------
FROM python:3.11-slim-bookworm AS build
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --frozen --no-dev --no-editable

# -- runtime: the environment and nothing else, as an unprivileged user -------------------------------
FROM python:3.11-slim-bookworm AS runtime
ARG GIT_SHA=""
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADESTACK_HOST=0.0.0.0 \
    TRADESTACK_PORT=8000 \
    TRADESTACK_DATA_DIR=/var/lib/tradestack \
    TRADESTACK_LOG_JSON=true \
    TRADESTACK_GIT_SHA=${GIT_SHA}
RUN groupadd --system --gid 10001 tradestack \
    && useradd --system --uid 10001 --gid tradestack --home-dir /var/lib/tradestack --create-home tradestack
WORKDIR /app
COPY --from=build --chown=root:root /app/.venv /app/.venv
COPY --from=build --chown=root:root /app/alembic.ini /app/alembic.ini
USER 10001:10001
EXPOSE 8000
# uvicorn finishes in-flight requests on SIGTERM; the orchestrator's grace period must exceed the drain.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('TRADESTACK_PORT', '8000')}/api/health\", timeout=2).status == 200 else 1)"]
ENTRYPOINT ["tradestack"]
CMD ["serve", "api"]
