#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian package `chromium`), checks that the
# page parses with its ten charts (five of the evaluation, five night-over-night trends), and
# writes a PNG screenshot.
#   scripts/report_screenshot.sh out/runs/as_of=YYYY-MM-DD/report.html docs/report.png
set -euo pipefail
page=$(realpath "$1")
png=${2:-report.png}
command -v chromium >/dev/null || { echo "report_screenshot: install chromium (apt-get install chromium)" >&2; exit 2; }
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$(mktemp -d)")
svgs=$(chromium "${flags[@]}" --dump-dom "file://$page" 2>/dev/null | grep -o "<svg" | wc -l)
[ "$svgs" -eq 10 ] || { echo "report_screenshot: expected 10 charts in the rendered DOM, found $svgs" >&2; exit 1; }
chromium "${flags[@]}" --window-size=1200,1800 --screenshot="$(realpath -m "$png")" "file://$page" 2>/dev/null
size=$(stat -c %s "$png")
[ "$size" -gt 20000 ] || { echo "report_screenshot: $png is only $size bytes" >&2; exit 1; }
echo "rendered $page: $svgs charts, screenshot $png ($size bytes)"
