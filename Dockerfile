# atlas-image-mcp as a hosted MCP endpoint: streamable HTTP at /mcp, legacy SSE at /sse, GET /healthz.
#
#   docker build -t atlas-image-mcp .
#   docker run -p 8000:8000 -e ATLAS_MCP_AUTH_TOKEN=... -e ATLASCLOUD_API_KEY=... atlas-image-mcp
#   docker run -p 8000:8000 -e ATLAS_MCP_USER_KEYS=1 atlas-image-mcp     # each client brings its own key
#
# The default command listens on 0.0.0.0 and therefore refuses to start (exit status 2) unless
# ATLAS_MCP_AUTH_TOKEN is set or ATLAS_MCP_USER_KEYS=1 (or --allow-unauthenticated is added).
# Pictures are not written to disk unless ATLAS_MCP_OUTPUT_DIR is set (mount a volume there).
# The spend ledger (budgets and usage) is kept in /home/mcp/.local/state/atlas-image-mcp: mount a
# volume there, or at ATLAS_MCP_STATE_DIR, for budgets that outlive the container.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin mcp

WORKDIR /tmp/build
COPY pyproject.toml README.md ./
COPY src ./src
# [postgres]: the driver of a shared PostgreSQL store (ATLAS_MCP_DATABASE_URL), for several replicas
RUN pip install ".[postgres]" && cd / && rm -rf /tmp/build

USER mcp
WORKDIR /home/mcp

EXPOSE 8000

# No curl in the slim image: probe /healthz with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["atlas-image-mcp", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
