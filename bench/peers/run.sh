#!/usr/bin/env bash
# bench/peers/run.sh: wasmq beside NATS JetStream (file store) and Redis streams (appendfsync
# always) on this machine, in one run, 1 KiB messages, each peer with its own client.
#
#   bench/peers/run.sh                 full run (~3 minutes on 2 cores, plus the cargo build)
#   PEERS_QUICK=1 bench/peers/run.sh   everything shrunk (~1.5 minutes)
#
# Env: WASMQ_BIN_DIR=DIR (existing wasmq-broker and wasmq; default: cargo build --release),
# PEERS_KEEP=1 keeps the temp dir (servers' data and every client's output) for a look.
# PEERS_ONLY=1,4 runs only those scenarios (1 one in flight, 2 sixteen publishers, 3 async and
# batched, 4 replay, 5 Redis vs sync flush).
# Each scenario starts its server on a free 127.0.0.1 port with its own temp data dir, runs the
# peer's client, stops it, then does the same for wasmq with the same count, time limit, size
# and concurrency. Only processes this script started are stopped (by PID). Prints one table:
# scenario | peer | wasmq | ratio wasmq/peer (rates: higher = wasmq better; latency rows say
# "lower is better", so there a ratio under 1 means wasmq is faster).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
SIZE=1024
# Sent to every fresh server before it is measured, which then waits for it to go idle (a new
# server's first writes pay one-off costs: wasmq creates and, under sync flush, zero-fills its
# first 1 GiB commit log segment, then prepares the next one).
WARMUP_N=500

if [[ "${PEERS_QUICK:-0}" == 1 ]]; then
    SYNC1_N=3000 SYNC1_S=3
    SYNC16_N=10000 SYNC16_S=3
    ASYNC_N=60000 ASYNC_S=4
    REPLAY_N=100000 REPLAY_S=10
    REDIS16_N=3000 REDIS1_N=800 REDIS_S=8
else
    SYNC1_N=100000 SYNC1_S=10
    SYNC16_N=300000 SYNC16_S=10
    ASYNC_N=600000 ASYNC_S=10
    REPLAY_N=1000000 REPLAY_S=40
    REDIS16_N=30000 REDIS1_N=8000 REDIS_S=20
fi

log() { printf '[peers %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---- install what is missing (Debian; runs as root here) -----------------------------------
install_missing() {
    local need=()
    command -v nats-server >/dev/null || need+=(nats-server)
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-benchmark >/dev/null || need+=(redis-tools)
    command -v redis-cli >/dev/null || need+=(redis-tools)
    command -v go >/dev/null || need+=(golang-go)
    # Pulls in nkeys, nuid and golang.org/x/crypto (its Depends) under /usr/share/gocode.
    dpkg -s golang-github-nats-io-go-nats-dev >/dev/null 2>&1 ||
        need+=(golang-github-nats-io-go-nats-dev)
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
    fi
}
install_missing

WORK=$(mktemp -d /tmp/wasmq-peers.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ "${PEERS_KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- binaries ------------------------------------------------------------------------------
log "building natsbench (Go, offline: Debian packages under /usr/share/gocode)"
# Go needs a build cache; without HOME (or with the cache off) use one in the temp dir.
case "$(go env GOCACHE 2>/dev/null || true)" in "" | off) export GOCACHE=$WORK/gocache ;; esac
(cd "$REPO/bench/peers/natsbench" &&
    GO111MODULE=off GOPATH="$WORK/gopath:/usr/share/gocode" \
        go build -o "$WORK/natsbench" .)
NATSBENCH=$WORK/natsbench

if [[ -n "${WASMQ_BIN_DIR:-}" ]]; then
    BIN=$WASMQ_BIN_DIR
else
    log "building wasmq release binaries"
    (cd "$REPO" && cargo build --release -p wasmq-broker -p wasmq-cli)
    BIN=$REPO/target/release
fi
for b in wasmq-broker wasmq; do
    [[ -x "$BIN/$b" ]] || { echo "no $BIN/$b" >&2; exit 1; }
done

# ---- helpers -------------------------------------------------------------------------------
# free_port VAR: sets VAR to a free 127.0.0.1 TCP port: no socket on it, below the ephemeral
# range (so no outgoing connection takes it meanwhile), not handed out earlier in this run.
USED=" "
free_port() {
    local p i
    for i in $(seq 1 500); do
        p=$((20000 + RANDOM % 12000))
        [[ "$USED" == *" $p "* ]] && continue
        if ! ss -Htan "sport = :$p" | grep -q .; then
            USED+="$p "
            printf -v "$1" '%s' "$p"
            return
        fi
    done
    echo "no free port" >&2
    return 1
}

wait_port() { # PORT SECONDS PID
    local i
    for i in $(seq 1 $((${2} * 10))); do
        kill -0 "$3" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Stops a server this script started (SIGTERM, then SIGKILL after 15 s).
stop() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=()
    for i in "${PIDS[@]}"; do [[ "$i" == "$pid" ]] || keep+=("$i"); done
    PIDS=("${keep[@]}")
}

# idle PID: waits (15 s at most) until a server is quiet, under 5% of a core over half a second,
# so its start-up work does not land in the measurement (wasmq prepares its next 1 GiB commit
# log segment after the first writes: ~2.5 s of one core here, about once per GiB afterwards).
CLK_TCK=$(getconf CLK_TCK)
idle() {
    local i t0 t1
    cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
    t1=$(cpu_ticks "$1")
    for i in $(seq 1 30); do
        t0=$t1
        sleep 0.5
        t1=$(cpu_ticks "$1")
        (((t1 - t0) * 100 > CLK_TCK * 5 / 2)) || return 0
    done
    log "pid $1 still busy after 15 s; measuring anyway"
}

# Between servers: write back what the last one left dirty, so it does not slow the next.
settle() { timeout 60 sync || true; }

# `key=value` of a line or block (the wasmq summary block, the natsbench line); "" if absent.
kv() { # FILE KEY
    sed -n '/^== summary ==$/,$p; /^natsbench /p' "$1" | tr ' ' '\n' |
        awk -F= -v k="$2" '$1 == k { print $2; exit }'
}

# Runs with failed or refused requests (neither bench retries them), listed under the table.
ERRS=()
note_errors() { # OUT
    local e
    e=$(kv "$1" errors)
    [[ -z "$e" || "$e" == 0 ]] || ERRS+=("$(basename "$1"): errors=$e")
}

ROWS=()
row() { # SCENARIO PEER WASMQ lower|higher
    local ratio
    ratio=$(awk -v a="$3" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) print "n/a";
        else printf "%.2f", a / b }')
    local s=$1
    [[ "$4" == lower ]] && s+=" (lower is better)"
    ROWS+=("$s|${2:-n/a}|${3:-n/a}|$ratio")
}

# ---- NATS JetStream ------------------------------------------------------------------------
NATS_PID="" NATS_URL=""
nats_start() {
    local port dir
    free_port port
    dir=$(mktemp -d "$WORK/nats.XXXX")
    nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir" >"$dir.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    wait_port "$port" 20 "$NATS_PID" || { tail "$dir.log" >&2; return 1; }
    NATS_URL="nats://127.0.0.1:$port"
    "$NATSBENCH" -url "$NATS_URL" setup
    "$NATSBENCH" -url "$NATS_URL" -size "$SIZE" -count "$WARMUP_N" -duration 30s sync >/dev/null
    idle "$NATS_PID"
}
nats_stop() { stop "$NATS_PID"; rm -rf "$WORK"/nats.*/; settle; }
nats_bench() { # OUT ARGS... (runs natsbench, bounded by its -duration plus a margin)
    local out=$1
    shift
    timeout 300 "$NATSBENCH" -url "$NATS_URL" -size "$SIZE" "$@" >"$out" 2>&1 || {
        tail -5 "$out" >&2
        return 0
    }
    grep '^natsbench ' "$out" >&2 || true
    note_errors "$out"
}

# ---- wasmq ---------------------------------------------------------------------------------
WQ_PID="" WQ_NS=""
wasmq_start() { # async|sync
    local port ns ha dir i
    free_port port
    free_port ns
    free_port ha
    dir=$(mktemp -d "$WORK/wasmq.XXXX")
    (cd "$dir" && exec "$BIN/wasmq-broker" --config "$REPO/conf/broker.toml" \
        --listen "127.0.0.1:$port" --namesrv-listen "127.0.0.1:$ns" --ha-listen "127.0.0.1:$ha" \
        --store-dir "$dir/store" --flush "$1") >"$dir.log" 2>&1 &
    WQ_PID=$!
    PIDS+=("$WQ_PID")
    wait_port "$port" 60 "$WQ_PID" && wait_port "$ns" 10 "$WQ_PID" ||
        { tail "$dir.log" >&2; return 1; }
    WQ_NS="127.0.0.1:$ns"
    # The broker registers with its embedded NameServer at start; retry until it is routable.
    for i in $(seq 1 50); do
        "$BIN/wasmq" --namesrv "$WQ_NS" topic create --topic Bench --queues 4 >/dev/null 2>&1 &&
            break
        sleep 0.2
    done
    [[ $i -lt 50 ]] || { echo "wasmq: topic create failed" >&2; return 1; }
    "$BIN/wasmq" bench produce --namesrv "$WQ_NS" --topic Bench --no-baseline --size "$SIZE" \
        --count "$WARMUP_N" --duration-secs 30 >/dev/null
    idle "$WQ_PID"
}
# wasmq_dispatched N: waits (20 s at most) until the topic's consume queues index N messages
# (they are filled from the commit log asynchronously; `bench consume` reads the queues' ranges
# as they are when it starts). Max offsets via a probe group that consumes one message.
wasmq_dispatched() {
    local i total=0 w=("$BIN/wasmq" --namesrv "$WQ_NS")
    "${w[@]}" consume --topic Bench --group peers-probe --count 1 >/dev/null 2>&1 || return 0
    for i in $(seq 1 100); do
        total=$("${w[@]}" offsets --group peers-probe --topic Bench 2>/dev/null |
            awk 'NF == 5 && $2 ~ /^[0-9]+$/ { s += $4 } END { print s + 0 }')
        ((total < $1)) || return 0
        sleep 0.2
    done
    log "wasmq: $total of $1 messages in the consume queues after 20 s"
}
wasmq_stop() { stop "$WQ_PID"; rm -rf "$WORK"/wasmq.*/; settle; }
wq() { # OUT produce|consume ARGS...
    local out=$1 cmd=$2
    shift 2
    local extra=(--no-baseline)
    [[ "$cmd" == consume ]] && extra=()
    timeout 300 "$BIN/wasmq" bench "$cmd" --namesrv "$WQ_NS" --topic Bench \
        --broker-pid "$WQ_PID" "${extra[@]}" "$@" >"$out" 2>&1 || {
        tail -5 "$out" >&2
        return 0
    }
    sed -n '/^== summary ==$/{n;p;n;p}' "$out" >&2
    note_errors "$out"
}

O=$WORK/out
mkdir -p "$O"
# PEERS_ONLY=1,4 runs only those scenarios.
want() { [[ -z "${PEERS_ONLY:-}" || ",$PEERS_ONLY," == *",$1,"* ]]; }
log "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

# ---- 1. one publish in flight (sync) -------------------------------------------------------
if want 1; then
    log "1/5 publish, one in flight: $SYNC1_N msgs or ${SYNC1_S}s"
    nats_start
    nats_bench "$O/n1" -clients 1 -count "$SYNC1_N" -duration "${SYNC1_S}s" sync
    nats_stop
    wasmq_start async
    wq "$O/w1" produce --mode sync --threads 1 --inflight 1 --size "$SIZE" \
        --count "$SYNC1_N" --duration-secs "$SYNC1_S"
    wasmq_stop
    row "publish 1 in flight: msgs/s" "$(kv "$O/n1" msgs_per_s)" "$(kv "$O/w1" msgs_per_s)" higher
    row "publish 1 in flight: p50 us" "$(kv "$O/n1" p50_us)" "$(kv "$O/w1" p50)" lower
    row "publish 1 in flight: p99 us" "$(kv "$O/n1" p99_us)" "$(kv "$O/w1" p99)" lower
fi

# ---- 2. 16 concurrent publishers (sync) ----------------------------------------------------
if want 2; then
    log "2/5 publish, 16 concurrent: $SYNC16_N msgs or ${SYNC16_S}s"
    nats_start
    nats_bench "$O/n2" -clients 16 -count "$SYNC16_N" -duration "${SYNC16_S}s" sync
    nats_stop
    wasmq_start async
    wq "$O/w2" produce --mode sync --threads 16 --inflight 1 --size "$SIZE" \
        --count "$SYNC16_N" --duration-secs "$SYNC16_S"
    wasmq_stop
    row "publish 16 concurrent: msgs/s" "$(kv "$O/n2" msgs_per_s)" "$(kv "$O/w2" msgs_per_s)" higher
    row "publish 16 concurrent: p50 us" "$(kv "$O/n2" p50_us)" "$(kv "$O/w2" p50)" lower
    row "publish 16 concurrent: p99 us" "$(kv "$O/n2" p99_us)" "$(kv "$O/w2" p99)" lower
fi

# ---- 3. batched / async publish ------------------------------------------------------------
# NATS: one connection, PublishAsync with 256 (then 1000) acks outstanding. wasmq: one
# connection with the same number of messages outstanding: batches of 64 x 4 requests in
# flight, 256 pipelined single sends, batches of 1000 x 1.
if want 3; then
    log "3/5 async/batched publish: $ASYNC_N msgs or ${ASYNC_S}s each"
    nats_start
    nats_bench "$O/n3a" -pending 256 -count "$ASYNC_N" -duration "${ASYNC_S}s" async
    nats_stop
    nats_start
    nats_bench "$O/n3b" -pending 1000 -count "$ASYNC_N" -duration "${ASYNC_S}s" async
    nats_stop
    wasmq_start async
    wq "$O/w3a" produce --mode batch --batch 64 --threads 1 --inflight 4 --size "$SIZE" \
        --count "$ASYNC_N" --duration-secs "$ASYNC_S"
    wq "$O/w3b" produce --mode sync --threads 1 --inflight 256 --size "$SIZE" \
        --count "$ASYNC_N" --duration-secs "$ASYNC_S"
    wq "$O/w3c" produce --mode batch --batch 1000 --threads 1 --inflight 1 --size "$SIZE" \
        --count "$ASYNC_N" --duration-secs "$ASYNC_S"
    wasmq_stop
    row "async 256 pending vs wasmq batch 64 x 4: msgs/s" \
        "$(kv "$O/n3a" msgs_per_s)" "$(kv "$O/w3a" msgs_per_s)" higher
    row "async 256 pending vs wasmq 256 pipelined: msgs/s" \
        "$(kv "$O/n3a" msgs_per_s)" "$(kv "$O/w3b" msgs_per_s)" higher
    row "async 1000 pending vs wasmq batch 1000: msgs/s" \
        "$(kv "$O/n3b" msgs_per_s)" "$(kv "$O/w3c" msgs_per_s)" higher
fi

# ---- 4. replay a backlog -------------------------------------------------------------------
# Both load REPLAY_N messages first (not measured here), then read them from the first one.
if want 4; then
    log "4/5 replay: backlog of $REPLAY_N msgs, ${REPLAY_S}s limit"
    nats_start
    nats_bench "$O/n4load" -pending 1000 -count "$REPLAY_N" -duration "${REPLAY_S}s" async
    nats_bench "$O/n4pull" -mode pull -batch 1000 -count "$REPLAY_N" -duration "${REPLAY_S}s" replay
    nats_bench "$O/n4ord" -mode ordered -count "$REPLAY_N" -duration "${REPLAY_S}s" replay
    nats_stop
    wasmq_start async
    # A send refused as busy (the bench does not retry it) is not stored: top the backlog up.
    stored=0
    for try in 1 2 3; do
        wq "$O/w4load$try" produce --mode batch --batch 1000 --threads 2 --inflight 2 \
            --size "$SIZE" --count "$((REPLAY_N - stored))" --duration-secs "$REPLAY_S"
        m=$(kv "$O/w4load$try" msgs)
        stored=$((stored + ${m:-0}))
        ((stored < REPLAY_N)) || break
    done
    wasmq_dispatched "$((stored + WARMUP_N))"
    wq "$O/w4" consume --threads 1 --pull-batch 1000 --inflight 4 \
        --count "$REPLAY_N" --duration-secs "$REPLAY_S"
    wasmq_stop
    row "replay: pull consumer, Fetch(1000): msgs/s" \
        "$(kv "$O/n4pull" msgs_per_s)" "$(kv "$O/w4" msgs_per_s)" higher
    row "replay: ordered push consumer: msgs/s" \
        "$(kv "$O/n4ord" msgs_per_s)" "$(kv "$O/w4" msgs_per_s)" higher
    row "replay: backlog stored (count check)" "$(kv "$O/n4load" msgs)" "$stored" higher
    row "replay: messages read (count check)" "$(kv "$O/n4pull" msgs)" "$(kv "$O/w4" msgs)" higher
fi

# ---- 5. Redis streams, appendfsync always, vs wasmq sync flush -----------------------------
# redis-benchmark XADD of one 1 KiB field; rps and latency from its --csv line (ms -> us).
if want 5; then
    redis_csv() { # FILE FIELD(rps|p50|p99)
        awk -F'","' -v f="$2" 'NR == 2 {
            gsub(/"/, "", $NF)
            if (f == "rps") print $(NF - 6)
            if (f == "p50") printf "%.0f\n", $(NF - 3) * 1000
            if (f == "p99") printf "%.0f\n", $(NF - 1) * 1000 }' "$1"
    }
    REDIS_VAL=$(head -c "$SIZE" /dev/zero | tr '\0' 'a')
    redis_run() { # OUT CLIENTS COUNT
        local port dir pid
        free_port port
        dir=$(mktemp -d "$WORK/redis.XXXX")
        redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes \
            --appendfsync always --save '' --daemonize no >"$dir.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_port "$port" 20 "$pid" || { tail "$dir.log" >&2; return 1; }
        timeout 60 redis-benchmark -h 127.0.0.1 -p "$port" -c 1 -n "$WARMUP_N" \
            XADD bench '*' f "$REDIS_VAL" >/dev/null 2>&1
    idle "$pid"
        timeout "$((REDIS_S + 30))" redis-benchmark -h 127.0.0.1 -p "$port" -c "$2" -n "$3" --csv \
            XADD bench '*' f "$REDIS_VAL" >"$1" 2>&1 || tail -3 "$1" >&2
        echo "redis -c $2: $(redis_csv "$1" rps) rps, p50 $(redis_csv "$1" p50) us" >&2
        stop "$pid"
        rm -rf "$dir"
        settle
    }
    log "5/5 Redis XADD (appendfsync always) vs wasmq sync flush: 16 clients $REDIS16_N, 1 client $REDIS1_N"
    redis_run "$O/r16" 16 "$REDIS16_N"
    redis_run "$O/r1" 1 "$REDIS1_N"
    wasmq_start sync
    wq "$O/w5a" produce --mode sync --threads 16 --inflight 1 --size "$SIZE" \
        --count "$REDIS16_N" --duration-secs "$REDIS_S"
    wq "$O/w5b" produce --mode sync --threads 1 --inflight 1 --size "$SIZE" \
        --count "$REDIS1_N" --duration-secs "$REDIS_S"
    wasmq_stop
    row "Redis XADD vs wasmq sync flush, 16 clients: msgs/s" \
        "$(redis_csv "$O/r16" rps)" "$(kv "$O/w5a" msgs_per_s)" higher
    row "Redis XADD vs wasmq sync flush, 16 clients: p50 us" \
        "$(redis_csv "$O/r16" p50)" "$(kv "$O/w5a" p50)" lower
    row "Redis XADD vs wasmq sync flush, 16 clients: p99 us" \
        "$(redis_csv "$O/r16" p99)" "$(kv "$O/w5a" p99)" lower
    row "Redis XADD vs wasmq sync flush, 1 client: msgs/s" \
        "$(redis_csv "$O/r1" rps)" "$(kv "$O/w5b" msgs_per_s)" higher
    row "Redis XADD vs wasmq sync flush, 1 client: p50 us" \
        "$(redis_csv "$O/r1" p50)" "$(kv "$O/w5b" p50)" lower
    row "Redis XADD vs wasmq sync flush, 1 client: p99 us" \
        "$(redis_csv "$O/r1" p99)" "$(kv "$O/w5b" p99)" lower
fi

# ---- the table -----------------------------------------------------------------------------
echo
echo "wasmq beside NATS JetStream $(nats-server --version 2>/dev/null | awk '{print $2}') (file store)" \
    "and Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) (appendfsync always)," \
    "1 KiB messages, $(nproc) cores, load after: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "$([[ "${PEERS_QUICK:-0}" == 1 ]] && echo '[PEERS_QUICK]')"
printf '%-70s | %12s | %12s | %s\n' "scenario" "peer" "wasmq" "ratio wasmq/peer"
printf '%s\n' "$(printf '%.0s-' $(seq 1 116))"
for r in "${ROWS[@]}"; do
    IFS='|' read -r s p w x <<<"$r"
    printf '%-70s | %12s | %12s | %s\n' "$s" "$p" "$w" "$x"
done
if ((${#ERRS[@]})); then
    echo "runs with errors (out/NAME under the temp dir; PEERS_KEEP=1 keeps it): ${ERRS[*]}"
fi
