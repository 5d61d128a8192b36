#!/usr/bin/env bash
# A partitioned switch on this machine (#22): 3 NATS servers, then one or two partitions
# (a junctiond primary each, its journal on its own JetStream stream with 3 replicas), and
# loadgen. Prints each loadgen's result and the CPU every process used per request.
# Data in a temporary folder, deleted at the end.
#
#   scripts/partitions.sh one   RATE DURATION   # one partition owns both issuers; one loadgen
#   scripts/partitions.sh local RATE DURATION   # two partitions; each door gets its own cards
#   scripts/partitions.sh cross RATE DURATION   # two partitions; each door gets the other's cards
#   scripts/partitions.sh move  RATE DURATION   # two partitions; issuer 1's cards through a's
#                                               # door, issuer 1 moved to b a third of the way in
#   scripts/partitions.sh qr-local RATE DURATION  # two partitions; wallet 5 (placed in b) pays
#                                                 # QR codes through b's door
#   scripts/partitions.sh qr-cross RATE DURATION  # the same through a's door (every request crosses)
#
# RATE is per loadgen (two loadgens in `local` and `cross`, one in `one`).
# Needs `cargo build --release --workspace --bins` and nats-server.
set -u
MODE=${1:?one, local, cross, move, qr-local or qr-cross}; RATE=${2:-2000}; DURATION=${3:-20s}
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/../target}
[ -d "$TARGET/release" ] || TARGET=$HOME/.cache/junction-target
BIN=$(cd "$TARGET/release" && pwd)
D=$(mktemp -d /tmp/junction-partitions-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORTS=($(port) $(port) $(port)); ROUTE_PORTS=($(port) $(port) $(port))
ROUTES=$(for p in "${ROUTE_PORTS[@]}"; do printf 'nats-route://127.0.0.1:%s,' "$p"; done | sed 's/,$//')
for i in 0 1 2; do
  cat > "$D/n$i.conf" <<EOF
port: ${NATS_PORTS[$i]}
server_name: n$i
max_payload: 8MB
jetstream { store_dir: "$D/nats-$i" }
cluster { name: junction, port: ${ROUTE_PORTS[$i]}, routes: [$(echo "$ROUTES" | sed 's/,/, /g')] }
EOF
  nats-server -c "$D/n$i.conf" > "$D/n$i.log" 2>&1 &
  PIDS+=($!)
done
URLS=$(for p in "${NATS_PORTS[@]}"; do printf '"nats://127.0.0.1:%s",' "$p"; done | sed 's/,$//')
for _ in $(seq 100); do grep -q "new metadata leader" "$D"/n*.log && break; sleep 0.2; done

# partition NAME SEED: a configuration for it (the demo's, both issuers' BINs routed).
partition() {
  $BIN/junctiond --print-config > "$D/$1.toml"
  cat >> "$D/$1.toml" <<EOF

[[bin_routes]]
prefix = "424242"
issuer = 1
mode = "switch"

[[bin_routes]]
prefix = "434343"
issuer = 2
mode = "switch"

[replication]
nats_urls = [$URLS]
node = "$1"
stream = "JUNCTION_$1"
replicas = 3

[cluster]
partition = "$1"
seed = $2
EOF
}
# node NAME: starts it; sets ISO_<NAME>, HTTP_<NAME>, PID_<NAME>.
node() {
  local iso=127.0.0.1:$(port) http=127.0.0.1:$(port)
  $BIN/junctiond --config "$D/$1.toml" --data-dir "$D/$1" --iso8583-listen "$iso" --http-listen "$http" > "$D/$1.out" 2> "$D/$1.log" &
  local pid=$!
  PIDS+=($pid)
  eval "ISO_$1=$iso HTTP_$1=$http PID_$1=$pid"
  for _ in $(seq 240); do grep -q "junctiond ready" "$D/$1.log" && return; sleep 0.5; done
  echo "junctiond $1 did not start"; tail -20 "$D/$1.log"; exit 1
}
case $MODE in
  one) partition a '{ "1" = "a", "2" = "a" }'; node a ;;
  local|cross|move) partition a '{ "1" = "a", "2" = "b" }'; partition b '{ "1" = "a", "2" = "b" }'; node a; node b ;;
  qr-local|qr-cross)
    partition a '{ "1" = "a", "2" = "b", "5" = "b" }'; partition b '{ "1" = "a", "2" = "b", "5" = "b" }'; node a; node b ;;
  *) echo "mode: one, local, cross, move, qr-local or qr-cross"; exit 2 ;;
esac

cpu_s() { # CPU seconds (user + system) of the given processes, summed
  local total=0
  for p in "$@"; do total=$((total + $(awk '{print $14 + $15}' /proc/$p/stat))); done
  echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%FT%TZ); commit $(git -C "$HERE" rev-parse --short HEAD)"
echo "mode $MODE, loadgen --rate $RATE --duration $DURATION each"
# run NAME DOOR OWNER ISSUER BIN BASE [loadgen arguments...]
run() {
  $BIN/loadgen --iso "$2" --http "$3" --provision 20000 --issuer "$4" --provision-bin "$5" --account-base "$6" \
    --rate "$RATE" --duration "$DURATION" --connections 4 --verify --json "$D/$1.json" "${@:7}" > "$D/$1.txt" 2>&1
}
provisioned=0
NATS_CPU0=$(cpu_s "${PIDS[0]}" "${PIDS[1]}" "${PIDS[2]}")
case $MODE in
  one)
    A0=$(cpu_s $PID_a)
    run g1 $ISO_a $HTTP_a 1 424242 100000000
    A1=$(cpu_s $PID_a); B0=0; B1=0 ;;
  local|cross)
    A0=$(cpu_s $PID_a); B0=$(cpu_s $PID_b)
    if [ "$MODE" = local ]; then d1=$ISO_a; d2=$ISO_b; else d1=$ISO_b; d2=$ISO_a; fi
    run g1 $d1 $HTTP_a 1 424242 100000000 & G1=$!
    run g2 $d2 $HTTP_b 2 434343 200000000 & G2=$!
    wait $G1 $G2
    A1=$(cpu_s $PID_a); B1=$(cpu_s $PID_b) ;;
  move)
    A0=$(cpu_s $PID_a); B0=$(cpu_s $PID_b)
    run g1 $ISO_a $HTTP_a 1 424242 100000000 --verify-also $HTTP_b --timeout 30s & G1=$!
    for _ in $(seq 600); do grep -q "provisioned in" "$D/g1.txt" 2>/dev/null && break; sleep 0.1; done
    seconds=$(echo "$DURATION" | tr -dc '0-9'); sleep $((seconds / 3))
    $BIN/junction --url "http://$HTTP_a" cluster move 1 b
    wait $G1
    A1=$(cpu_s $PID_a); B1=$(cpu_s $PID_b)
    started=$(grep -m1 'moving_to="b"' "$D/a.log" | cut -c1-27); ended=$(grep -m1 'issuer moved' "$D/a.log" | cut -c1-27)
    echo "move: asked $started, handed over $ended ($(grep -m1 'issuer moved' "$D/a.log" | grep -o 'accounts=[0-9]*'))"
    python3 -c "
from datetime import datetime as d
f=lambda t: d.fromisoformat(t.rstrip('Z'))
print('move took %.0f ms' % ((f('$ended') - f('$started')).total_seconds() * 1000))" ;;
  qr-local|qr-cross)
    A0=$(cpu_s $PID_a); B0=$(cpu_s $PID_b)
    if [ "$MODE" = qr-local ]; then door=$HTTP_b; other=$HTTP_a; else door=$HTTP_a; other=$HTTP_b; fi
    # One request in flight per connection: enough connections for RATE at tens of ms.
    $BIN/loadgen --mode qr --http "$door" --verify --verify-also "$other" --rate "$RATE" --duration "$DURATION" \
      --connections 64 --timeout 20s --json "$D/g1.json" > "$D/g1.txt" 2>&1
    A1=$(cpu_s $PID_a); B1=$(cpu_s $PID_b) ;;
esac
NATS_CPU1=$(cpu_s "${PIDS[0]}" "${PIDS[1]}" "${PIDS[2]}")
answered=0
for g in "$D"/g*.txt; do
  echo "--- $(basename "$g" .txt)"; sed -En '/^loadgen (iso8583|qr)/,$p' "$g" | grep -vE "^\s+(by kind|[a-z_]+ +sent)" | head -30
  grep -E "^verify: (PASSED|FAILED)|CHECK FAILED" "$g"
  n=$(python3 -c "import json,sys; r=json.load(open('${g%.txt}.json')); print(r['responses_answered'])" 2>/dev/null || echo 0)
  answered=$((answered + n))
done
echo "--- CPU over the run (includes provisioning): junctiond a $(echo "$A1 - $A0" | bc) s, b $(echo "$B1 - $B0" | bc) s, nats $(echo "$NATS_CPU1 - $NATS_CPU0" | bc) s; answered $answered"
if [ "$answered" -gt 0 ]; then
  echo "CPU µs per request: junctiond $(echo "scale=1; ($A1 - $A0 + $B1 - $B0) * 1000000 / $answered" | bc), nats $(echo "scale=1; ($NATS_CPU1 - $NATS_CPU0) * 1000000 / $answered" | bc)"
fi
