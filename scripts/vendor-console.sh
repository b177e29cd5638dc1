#!/usr/bin/env bash
# Fetches the console's two JavaScript libraries from npm into
# src/ember/console/static/vendor/ (committed: the console never loads a CDN).
# Run again only to change a version; the versions are named here and in
# that folder's README.
set -euo pipefail
HTMX=2.0.4
UPLOT=1.6.32
dest="$(cd "$(dirname "$0")/.." && pwd)/src/ember/console/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX" "uplot@$UPLOT" >/dev/null
mkdir htmx uplot
tar xzf "htmx.org-$HTMX.tgz" -C htmx
tar xzf "uplot-$UPLOT.tgz" -C uplot
cp htmx/package/dist/htmx.min.js "$dest/htmx.min.js"
cp htmx/package/LICENSE "$dest/LICENSE-htmx"
cp uplot/package/dist/uPlot.iife.min.js "$dest/uPlot.iife.min.js"
cp uplot/package/dist/uPlot.min.css "$dest/uPlot.min.css"
cp uplot/package/LICENSE "$dest/LICENSE-uplot"
echo "vendored htmx.org $HTMX and uplot $UPLOT into $dest"
