#!/usr/bin/env bash
# Replication's cost: one junctiond alone (`single`) against a replicated primary (3 NATS
# servers with JetStream, R3, plus a standby: `replicated`), the same loadgen run, all on
# this machine. Usage: scripts/replication-overhead.sh single|replicated <loadgen args...>
# Needs nats-server and `cargo build --release --workspace --bins`.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release
BIN=$(cd "$BIN" && pwd)
MODE=$1; shift
D=$(mktemp -d /tmp/junction-replication-XXXXXX); trap 'rm -rf "$D"' EXIT; cd $D
source "$HERE/nats-cluster.sh"
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
$BIN/junctiond --print-config > base.toml
if [ "$MODE" = replicated ]; then
  nats_cluster "$D" 24221 26221
  cat >> base.toml <<C

[replication]
nats_urls = ["nats://127.0.0.1:24222", "nats://127.0.0.1:24223", "nats://127.0.0.1:24224"]
node = "a"
C
fi
$BIN/junctiond --config base.toml --data-dir $D/a --node a --iso8583-listen 127.0.0.1:28583 --http-listen 127.0.0.1:28080 > a.out 2> a.log & echo $! > a.pid
sleep 3
if [ "$MODE" = replicated ]; then
  $BIN/junctiond --config base.toml --data-dir $D/b --node b --standby --iso8583-listen 127.0.0.1:28593 --http-listen 127.0.0.1:28090 > b.out 2> b.log & echo $! > b.pid
  sleep 3
fi
$BIN/loadgen --iso 127.0.0.1:28583 --http 127.0.0.1:28080 --provision 100000 --rate 1 --duration 1s > /dev/null 2>&1
c0=$(cpu $(cat a.pid)); t0=$(date +%s%N)
cs0=0; [ -f b.pid ] && cs0=$(cpu $(cat b.pid))
cn0=0; for p in n*.pid; do [ -f $p ] && cn0=$((cn0 + $(cpu $(cat $p)))); done
$BIN/loadgen --iso 127.0.0.1:28583 --http 127.0.0.1:28080 "$@" > lg.out 2>&1
c1=$(cpu $(cat a.pid)); t1=$(date +%s%N)
cs1=0; [ -f b.pid ] && cs1=$(cpu $(cat b.pid))
cn1=0; for p in n*.pid; do [ -f $p ] && cn1=$((cn1 + $(cpu $(cat $p)))); done
answered=$(grep -oP "^\s+answered\s+\K[0-9]+" lg.out | head -1)
echo "mode=$MODE args=$* answered=$answered"
grep -E "throughput|latency from|by code|timeouts  |cpu per request" lg.out
hz=$(getconf CLK_TCK)
echo "junctiond primary cpu: $(( (c1-c0)*1000000/hz/answered )) us/request; standby $(( (cs1-cs0)*1000000/hz/answered )) us/request; nats (3 servers) $(( (cn1-cn0)*1000000/hz/answered )) us/request"
[ -f a.pid ] && curl -s 127.0.0.1:28080/metrics | grep -E "^junction_replication_ack" 
kill $(cat a.pid) 2>/dev/null; [ -f b.pid ] && kill $(cat b.pid); sleep 1; for p in n*.pid; do [ -f $p ] && kill $(cat $p); done; sleep 1
