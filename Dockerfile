# syntax=docker/dockerfile:1
# Build stage: build the wheel and install it with its dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY adapters ./adapters
COPY migrations ./migrations
RUN python -m venv /opt/tokbot && /opt/tokbot/bin/pip install .

# Run stage: just the virtualenv, as an unprivileged user.
FROM python:3.11-slim
ENV PATH=/opt/tokbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////data/tokbot.db \
    TOKBOT_HTTP_HOST=0.0.0.0 \
    TOKBOT_HTTP_PORT=3000
RUN useradd --system --uid 10001 --home-dir /data --create-home tokbot
COPY --from=build /opt/tokbot /opt/tokbot
USER tokbot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('TOKBOT_HTTP_PORT', '3000')}/healthz\", timeout=4)"]
ENTRYPOINT ["tokbot"]
CMD ["run"]
