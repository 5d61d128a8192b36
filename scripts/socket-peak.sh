#!/usr/bin/env bash
# The socket's peak (#17): a fresh junctiond on the demo configuration with a larger
# transfer index, one loadgen run against it, the switch's warnings and pause afterwards.
# Everything on this machine; data in a temporary folder, deleted at the end.
#
#   scripts/socket-peak.sh --provision 1000000 --rate 180000 --duration 60s --verify
#   WINDOWS_EVERY_S=120 scripts/socket-peak.sh --provision 1000000 --rate 100000 --duration 600s
#
# INDEX (default 56000000): index_memory_entries_max. Memory should hold more than
#   TIMED_ID_SKEW_S (300 s) of ids at the offered rate, or every fresh request costs a
#   lookup in the cold index (see docs/performance.md); 56M takes ~4.5 GB and ~10 s to reserve.
# WINDOWS_EVERY_S: close the settlement window this often during the run.
# KEEP_LOG=FILE: keep junctiond's log there (it is deleted with the data otherwise).
# TRACE_RATIO (e.g. 0.01): trace that share of requests (`[telemetry]`), exported over
#   OTLP/HTTP to a sink on this machine that answers every export 200 and keeps nothing.
# Needs `cargo build --release --workspace --bins`.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/../target}
[ -d "$TARGET/release" ] || TARGET=$HOME/.cache/junction-target   # where .ci/run builds
BIN=$(cd "$TARGET/release" && pwd)
D=$(mktemp -d /tmp/junction-peak-XXXXXX)
cleanup() { [ -n "${P:-}" ] && kill "$P" 2>/dev/null; [ -n "${SINK:-}" ] && kill "$SINK" 2>/dev/null; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
ISO=127.0.0.1:28583 HTTP=127.0.0.1:28080
$BIN/junctiond --print-config | sed "s/^index_memory_entries_max = .*/index_memory_entries_max = ${INDEX:-56000000}/" > "$D/junctiond.toml"
if [ -n "${TRACE_RATIO:-}" ]; then
  python3 -c '
import http.server
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 24318), Sink).serve_forever()' &
  SINK=$!
  printf '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:24318"\nsample_ratio = %s\n' "$TRACE_RATIO" >> "$D/junctiond.toml"
fi
$BIN/junctiond --config "$D/junctiond.toml" --data-dir "$D/data" --iso8583-listen $ISO --http-listen $HTTP > "$D/out" 2> "$D/log" &
P=$!
for _ in $(seq 120); do grep -q "junctiond ready" "$D/log" && break; sleep 0.5; done
grep -q "junctiond ready" "$D/log" || { echo "junctiond did not start"; cat "$D/log"; exit 1; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(date -u +%FT%TZ); commit $(git -C "$HERE" rev-parse --short HEAD)"
echo "loadgen $*${TRACE_RATIO:+ (tracing $TRACE_RATIO of requests)}"
if [ -n "${WINDOWS_EVERY_S:-}" ]; then
  ( sleep 30; while kill -0 $P 2>/dev/null; do sleep "$WINDOWS_EVERY_S"; $BIN/junction --url http://$HTTP window close 2>&1 | head -1; done ) &
fi
$BIN/loadgen --iso $ISO --http $HTTP "$@"
status=$?
echo "--- junctiond: longest pause, group commits, warnings"
curl -s http://$HTTP/metrics | grep -E "^junction_ledger_(pause_seconds_max|wait_seconds_max|commit_seconds_max|group_commits_total|entries_total)"
grep -E "WARN|ERROR|checkpoint written" "$D/log" | cut -c1-200 | tail -20
echo "junctiond RSS: $(ps -o rss= -p $P) KiB"
[ -n "${KEEP_LOG:-}" ] && cp "$D/log" "$KEEP_LOG"
exit $status
