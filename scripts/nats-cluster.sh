# Sourced by the replication scripts: starts a 3-server NATS JetStream cluster on loopback.
# nats_cluster DIR CLIENT_BASE ROUTE_BASE: servers on CLIENT_BASE+1..3, routes on
# ROUTE_BASE+1..3, stores and logs in DIR, pids in DIR/n1.pid..n3.pid.
nats_cluster() {
  local dir=$1 client=$2 route=$3 i
  local routes="nats-route://127.0.0.1:$((route+1)), nats-route://127.0.0.1:$((route+2)), nats-route://127.0.0.1:$((route+3))"
  for i in 1 2 3; do
    cat > "$dir/n$i.conf" <<C
port: $((client+i))
server_name: n$i
max_payload: 8MB
jetstream { store_dir: $dir/js$i }
cluster { name: junction, port: $((route+i)), routes: [$routes] }
C
    nats-server -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 &
    echo $! > "$dir/n$i.pid"
  done
  sleep 4
}
