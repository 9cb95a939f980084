# atlas-image-mcp as a hosted MCP endpoint: streamable HTTP at /mcp, legacy SSE at /sse, GET /healthz.
#
#   docker build -t atlas-image-mcp .
#   umask 077; printf 'ATLAS_MCP_AUTH_TOKEN=%s\nATLASCLOUD_API_KEY=%s\n' "$(openssl rand -hex 32)" your-atlas-cloud-api-key > atlas.env
#   docker run --rm -p 127.0.0.1:8000:8000 --env-file atlas.env atlas-image-mcp
#   grep ATLAS_MCP_AUTH_TOKEN atlas.env       # the token clients send as "Authorization: Bearer <token>"
#
#   docker run --rm -p 127.0.0.1:8000:8000 -e ATLAS_MCP_USER_KEYS=1 atlas-image-mcp    # each client brings its own key
#   docker run --rm -i -e ATLASCLOUD_API_KEY atlas-image-mcp serve                      # MCP over stdio, for a client
#
# The default command listens on 0.0.0.0 and therefore refuses to start (exit status 2) unless
# ATLAS_MCP_AUTH_TOKEN is set or ATLAS_MCP_USER_KEYS=1 (or --allow-unauthenticated is added).
# ATLAS_MCP_PORT (default 8000) is the port it listens on and the one the health check probes.
# Pictures are not written to disk unless ATLAS_MCP_OUTPUT_DIR is set (mount a volume there).
# The spend ledger (budgets and usage) is kept in /home/mcp/.local/state/atlas-image-mcp: mount a
# volume there, or at ATLAS_MCP_STATE_DIR, for budgets that outlive the container.

# The wheels are made in a stage of its own: the package and every dependency, with [postgres] (the
# driver of a shared PostgreSQL store, ATLAS_MCP_DATABASE_URL, for several replicas). The image then
# installs them from that folder alone, with no build tools and no index.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres]"

FROM python:3.12-slim
# The MCP Registry checks this label to accept the image as the server's. The owner is written once,
# in pyproject.toml's [project.urls]; `python scripts/registry.py --write` brings this line along.
LABEL io.modelcontextprotocol.server.name="io.github.OWNER/atlas-image-mcp" \
      org.opencontainers.image.source="https://github.com/OWNER/atlas-image-mcp" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin mcp
COPY --from=build /wheels /wheels
RUN pip install --no-index /wheels/*.whl && rm -rf /wheels

# A numeric user, so a platform can check it is not root (Kubernetes runAsNonRoot).
USER 10001:10001
WORKDIR /home/mcp

EXPOSE 8000

# Probes /healthz on ATLAS_MCP_PORT, the port the server listens on (no curl in the slim image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["atlas-image-mcp", "healthcheck"]

# The command is the entry point, so `docker run ... IMAGE serve` runs MCP over stdio instead.
ENTRYPOINT ["atlas-image-mcp"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0"]
