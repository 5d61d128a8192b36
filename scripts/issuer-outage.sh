#!/usr/bin/env bash
# Four parties at RATE/s (default 20000) with an outage of the issuer's host, 12 s to 17 s
# into its run: `silent` (answers nothing) or `disconnect`. Both loadgens --verify.
# Usage: scripts/issuer-outage.sh silent|disconnect [RATE]. Needs release binaries.
set -u
BIN=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release
BIN=$(cd "$BIN" && pwd)
KIND=${1:-silent}; RATE=${2:-20000}
D=$(mktemp -d /tmp/junction-outage-XXXXXX); trap 'rm -rf "$D"' EXIT; cd $D
$BIN/junctiond --data-dir $D/d > o 2> l & echo $! > j.pid
sleep 2
for p in 11 3; do curl -s -X POST -H "authorization: Bearer demo-admin-token-change-me" -H "content-type: application/json" \
  -d '{"currency":"USD","net_debit_cap":1000000000000000}' localhost:8080/v1/admin/participants/$p/caps > /dev/null; done
$BIN/loadgen --mode issuer --institution 100003 --key bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb --issuer 11 --connections 4 \
  --duration 45s --outage 12s:5s --outage-kind $KIND --verify > iss.out 2>&1 &
ISS=$!
sleep 2
$BIN/loadgen --hosted-cards 100000 --issuer 11 --rate $RATE --duration 30s --timeout 10s \
  --mix authorization=0,completion=0,unknown_card=0 --verify > acq.out 2>&1
wait $ISS
echo "== acquirer"; grep -v "^\[" acq.out | grep -E "by code|timeouts  |stood in|slow answers|latency from|verify|must decline|mismatch" 
echo "== issuer"; grep -v "^\[" iss.out | tail -12
kill $(cat j.pid)
