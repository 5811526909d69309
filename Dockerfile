# syntax=docker/dockerfile:1
# Production image of the Sensorhub API (also used for the Celery worker and beat).
# Build it with `make image`, which passes the two build arguments below.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The app version and the SHA-256 of requirements/runtime.txt, recorded as labels; the build
# stops if either is missing or does not match the sources.
ARG APP_VERSION
ARG LOCK_SHA256
WORKDIR /src
# Only locked, hashed packages: the build tools in their own venv, the runtime set in the
# image's, then the project itself as a wheel without dependencies.
COPY requirements ./requirements
RUN test -n "$LOCK_SHA256" || { echo "LOCK_SHA256 is not set: build with make image" >&2; exit 1; } \
    && echo "$LOCK_SHA256  requirements/runtime.txt" | sha256sum --check --strict \
    && python -m venv /opt/build /opt/venv \
    && /opt/build/bin/pip install --require-hashes -r requirements/build.txt \
    && /opt/venv/bin/pip install --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
    && /opt/venv/bin/pip install --no-deps /dist/*.whl \
    && /opt/venv/bin/pip check
RUN version="$(cd / && /opt/venv/bin/python -c 'import app; print(app.__version__)')" \
    && [ "$version" = "$APP_VERSION" ] \
    || { echo "APP_VERSION is '$APP_VERSION', the app is $version: build with make image" >&2; exit 1; }

FROM python:3.12-slim AS runtime
ARG APP_VERSION
ARG LOCK_SHA256
LABEL org.opencontainers.image.title="sensorhub" \
      org.opencontainers.image.version="$APP_VERSION" \
      sensorhub.lock-sha256="$LOCK_SHA256"
ENV PATH="/opt/venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 PORT=8000 ENVIRONMENT=production
RUN groupadd --system sensorhub && useradd --system --gid sensorhub --home /app sensorhub
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER sensorhub
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/health', timeout=2)"]
CMD ["python", "-m", "app"]
