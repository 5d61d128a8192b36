#!/usr/bin/env bash
# Failover drill: a primary and a standby on a 3-server NATS cluster, loadgen on both
# addresses at 2,000/s, then KILLS (20) kill -9s of whichever node is primary, each time
# timing the standby's takeover and restarting the killed node as a standby.
# LEASE_MS (2000), LG_S (loadgen seconds, 240). Needs nats-server and release binaries.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release
BIN=$(cd "$BIN" && pwd)
D=$(mktemp -d /tmp/junction-failover-XXXXXX); trap 'rm -rf "$D"' EXIT; cd $D
source "$HERE/nats-cluster.sh"
nats_cluster "$D" 14221 16221
$BIN/junctiond --print-config > base.toml
cat >> base.toml <<C

[replication]
nats_urls = ["nats://127.0.0.1:14222", "nats://127.0.0.1:14223", "nats://127.0.0.1:14224"]
node = "x"
lease_ms = ${LEASE_MS:-2000}
C
start() { # name iso http standby
  local extra=""; [ "$4" = 1 ] && extra="--standby"
  RUST_LOG=info setsid $BIN/junctiond --config base.toml --data-dir $D/$1 --node $1 --iso8583-listen 127.0.0.1:$2 --http-listen 127.0.0.1:$3 $extra > $1.out 2>> $1.log &
  echo $! > $1.pid
}
start a 18583 18080 0; sleep 3
start b 18593 18090 1; sleep 3
$BIN/loadgen --iso 127.0.0.1:18583 --http 127.0.0.1:18080 --provision 20000 --rate 1 --duration 1s > /dev/null 2>&1
$BIN/loadgen --iso 127.0.0.1:18583,127.0.0.1:18593 --http 127.0.0.1:18080,127.0.0.1:18090 --rate 2000 --duration ${LG_S:-240}s --timeout 30s --connections 4 > lg.out 2>&1 &
LG=$!
primary=a; standby=b
declare -A iso=([a]=18583 [b]=18593) http=([a]=18080 [b]=18090)
for k in $(seq 1 ${KILLS:-20}); do
  sleep 5
  before=$(grep -c ready $standby.out)
  t0=$(date +%s%N); kill -9 $(cat $primary.pid)
  while [ "$(grep -c ready $standby.out)" -le "$before" ]; do sleep 0.01; done
  t1=$(date +%s%N)
  echo "kill $k: $primary -> $standby ready after $(( (t1-t0)/1000000 )) ms"
  start $primary ${iso[$primary]} ${http[$primary]} 1
  # wait until the restarted node is a caught-up standby
  for w in $(seq 1 300); do
    s=$(curl -s -H "authorization: Bearer demo-admin-token-change-me" localhost:${http[$primary]}/v1/admin/status 2>/dev/null)
    echo "$s" | grep -q '"role":"standby"' && echo "$s" | grep -q '"lag":0' && break; sleep 0.1; done
  t=$primary; primary=$standby; standby=$t
done
wait $LG
grep -v "^\[" lg.out | grep -E "answered|timeouts|lost|failovers|latency|by code|duplicates:"

kill $(cat a.pid b.pid) 2>/dev/null; kill $(cat n1.pid n2.pid n3.pid) 2>/dev/null; sleep 1
