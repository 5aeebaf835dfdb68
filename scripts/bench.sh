#!/usr/bin/env bash
# Benchmarks predbridged against raw librdkafka and kcat on the local mTLS broker; prints one table.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
: "${PB_BENCH_BUILD:=$repo/build/bench}"
: "${PB_BENCH_WRITERS:=4}"

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
say() { printf 'bench: %s\n' "$*" >&2; }

usage() {
  cat <<USAGE
usage: scripts/bench.sh [--quick] [--keep] [--no-build] [--private-broker]

Runs the same workload through predbridged (load generator -> UNIX socket -> predbridged -> Kafka),
a raw librdkafka producer (the ceiling) and kcat -P, all with acks=all, idempotence, lz4,
linger.ms=5 and mTLS (TLS 1.3), and reads it back with a librdkafka consumer that measures
throughput (first arrival to last arrival) and latency (sent_ns in the record to arrival).

  --quick   50,000 x 300 B fire-and-forget, and 3 s of 300 B paced at 10,000/s (latency)
  default   300 B and 4 KiB, fire-and-forget and --ack delivered (300 B also --ack accepted), the
            10,000/s latency point, and a drain of 300,000 records by the raw librdkafka consumers
            (without and with a group, and the group loop checking records as libpredbridge does)
            and libpredbridge
  --keep    keep the temporary directory (configs, logs) and print its path
  --private-broker  use (or start, and then stop) a broker of our own under \$PB_BENCH_BUILD/local,
            not the shared one: test runs elsewhere in the tree restart the shared broker
  --no-build  measure the binaries already in \$PB_BENCH_BUILD (e.g. while the tree does not build)

Broker: uses the one of scripts/kafka-local.sh under \$PB_LOCAL_DIR (default .local) if it runs;
otherwise (or with --private-broker) the one under \$PB_BENCH_BUILD/local, starting it if needed
and then stopping it at the end. Every run creates its own topics (predictions-bench-*).
Environment: PB_BENCH_BUILD ($PB_BENCH_BUILD), PB_BENCH_WRITERS ($PB_BENCH_WRITERS) writer connections,
PB_BENCH_N300, PB_BENCH_N4K, PB_BENCH_RATE_SECS override the record counts and the paced run's
length; PB_BENCH_DUMP=1 (with --keep) keeps "seq sent_ns arrival_ns kafka_timestamp_ms" of every record;
PB_BENCH_RAW_HEADERS=1 makes the raw producer add predbridged's four headers to every record.
PB_BENCH_FSYNC_INTERVAL_MS sets predbridged's spool.fsync_interval_ms (default: the daemon's);
PB_BENCH_PREDBRIDGED_CONF is added to predbridged's configuration (lines of key = value).
PB_BENCH_ROUNDS (5, or 1 with --quick) is how many rounds each full-speed scenario runs: a round
is predbridged with spool.fsync interval and never, then (fire-and-forget) raw, raw+headers,
raw+headers+file (also appending each line to a file, as the spool does) and kcat; the first
round is the table's, and the medians over all rounds give the throughput and spool-cost ratios
reported under the table.
PB_BENCH_DRAIN_RUNS (3) is how often each consumer drains the filled topic (the row is the median);
PB_BENCH_PACED_RUNS (3, or 1 with --quick) how often the 10,000/s latency point runs;
PB_BENCH_PACED_NOFSYNC=1 runs it with spool.fsync = never too; PB_BENCH_ONLY (a bash regular
expression, e.g. '4KiB ff') runs only the scenarios whose row name matches it; PB_BENCH_SPOOL_PARENT puts
predbridged's spool under that directory instead of the temporary one.
USAGE
}

quick=0 keep=0 build=1 private=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    --no-build) build=0 ;;
    --private-broker) private=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done

for tool in cmake ninja kcat pkg-config /usr/bin/time mkfifo timeout; do
  command -v "$tool" >/dev/null || die "'$tool' not found: run scripts/setup.sh"
done

# ---- build (RelWithDebInfo, not sanitized: these are measurements) ----
if [ "$build" = 1 ]; then
  say "building in $PB_BENCH_BUILD (RelWithDebInfo)"
  mkdir -p "$PB_BENCH_BUILD"
  cmake -S "$repo" -B "$PB_BENCH_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPB_SANITIZE=OFF \
    -DPB_INTEGRATION=OFF >"$PB_BENCH_BUILD/bench-cmake.log" 2>&1 \
    || { tail -n 20 "$PB_BENCH_BUILD/bench-cmake.log" >&2; die "cmake failed (log: $PB_BENCH_BUILD/bench-cmake.log)"; }
  cmake --build "$PB_BENCH_BUILD" --target predbridged pb_loadgen pb_benchconsumer pb_rawproducer \
    >"$PB_BENCH_BUILD/bench-build.log" 2>&1 \
    || { grep -E 'error|FAILED' "$PB_BENCH_BUILD/bench-build.log" | head -n 10 >&2
         die "build failed (log: $PB_BENCH_BUILD/bench-build.log); --no-build measures the binaries already there"; }
fi
bin=$PB_BENCH_BUILD/tests/bench
predbridged=$PB_BENCH_BUILD/src/daemon/predbridged
for b in "$predbridged" "$bin/pb_loadgen" "$bin/pb_benchconsumer" "$bin/pb_rawproducer"; do
  [ -x "$b" ] || die "$b not built (run without --no-build)"
done

# ---- temporary directory, and cleanup of everything this script started ----
started_broker=
tmp=$(mktemp -d /tmp/pb-bench.XXXXXX)
pids=()
cleanup() {
  local p
  [ -z "${consumer_pid:-}" ] || stop_consumer
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$started_broker" ]; then PB_LOCAL_DIR="$started_broker" "$repo/scripts/kafka-local.sh" stop >&2 || true; fi
  if [ -n "${PB_BENCH_SPOOL_PARENT:-}" ] && [ -n "${spool_dir:-}" ]; then rm -rf "$spool_dir" "$spool_dir.raw-file.ndjson"; fi
  if [ "$keep" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- broker ----
local_dir=${PB_LOCAL_DIR:-$repo/.local}
if [ "$private" = 1 ] || ! PB_LOCAL_DIR="$local_dir" "$repo/scripts/kafka-local.sh" status >/dev/null 2>&1; then
  local_dir=$PB_BENCH_BUILD/local
  if ! PB_LOCAL_DIR="$local_dir" "$repo/scripts/kafka-local.sh" status >/dev/null 2>&1; then
    say "no broker runs: starting a private one under $local_dir"
    started_broker=$local_dir
    PB_LOCAL_DIR="$local_dir" "$repo/scripts/kafka-local.sh" start >&2
  fi
fi
[ -f "$local_dir/broker.env" ] || die "$local_dir/broker.env missing"
# shellcheck disable=SC1091
. "$local_dir/broker.env"
: "${PB_BOOTSTRAP:?broker.env lacks PB_BOOTSTRAP}" "${PB_CERT_DIR:?broker.env lacks PB_CERT_DIR}"
: "${PB_RIG_ADMIN:?broker.env lacks PB_RIG_ADMIN}"
C=$PB_CERT_DIR
say "broker $PB_BOOTSTRAP (certificates in $C)"

forget_pid() { # forget_pid PID: it has been waited for
  local p rest=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
  pids=("${rest[@]}")
}

run_id=$(date +%s)-$$
# CPU time the hypervisor gave to others while this run wanted it (steal, from /proc/stat): on a
# shared VM the main cause of run-to-run noise, so the report says how much there was.
cpu_times() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9 }' /proc/stat; }
read -r cpu_total0 cpu_steal0 < <(cpu_times)
failures=0
topic_n=0
new_topic() { # new_topic -> sets TOPIC to a fresh topic (3 partitions, leaders elected)
  topic_n=$((topic_n + 1))
  local t="predictions-bench-$run_id-$topic_n"
  "$PB_RIG_ADMIN" --bootstrap "$PB_BOOTSTRAP" --ca "$C/ca.crt" --cert "$C/admin.crt" --key "$C/admin.key" \
    --partitions 3 --timeout-ms 30000 topic "$t" >"$tmp/admin-$topic_n.log" 2>&1 \
    || { cat "$tmp/admin-$topic_n.log" >&2; die "cannot create topic $t"; }
  TOPIC=$t
}

# read_until FD PATTERN SECONDS LOG: copies lines from FD to LOG until one matches PATTERN (in REPLY);
# fails at the deadline or at end of file.
read_until() {
  local fd=$1 pat=$2 deadline=$((SECONDS + $3)) log=$4 line left
  while :; do
    left=$((deadline - SECONDS)); [ "$left" -gt 0 ] || return 1
    IFS= read -r -t "$left" -u "$fd" line || return 1
    printf '%s\n' "$line" >>"$log"
    case "$line" in $pat) REPLY=$line; return 0 ;; esac
  done
}

# Consumer: started before the producer side, reads the fresh topic from the start.
consumer_fd=
consumer_pid=
start_consumer() { # start_consumer TOPIC N WARMUP TIMEOUT [SOURCE]
  local extra=(--source "${5:-rdkafka}")
  [ "${PB_BENCH_DUMP:-0}" = 0 ] || extra+=(--dump "$tmp/arrivals-$1-${5:-rdkafka}.txt")
  mkfifo "$tmp/consumer.fifo"
  /usr/bin/time -f '%U %S %M' -o "$tmp/consumer-time.out" \
    "$bin/pb_benchconsumer" -b "$PB_BOOTSTRAP" -t "$1" --ca "$C/ca.crt" --cert "$C/predbridge-consumer.crt" \
    --key "$C/predbridge-consumer.key" -n "$2" --warmup "$3" --timeout "$4" "${extra[@]}" \
    >"$tmp/consumer.fifo" 2>>"$tmp/consumer.err" &
  consumer_pid=$!
  pids+=("$consumer_pid")
  exec {consumer_fd}<"$tmp/consumer.fifo"
  rm -f "$tmp/consumer.fifo"
  read_until "$consumer_fd" 'READY' 60 "$tmp/consumer.log" \
    || { cat "$tmp/consumer.err" >&2; die "the consumer did not get ready within 60 s"; }
}
# The consumer runs under /usr/bin/time: the signal goes to its child, which then prints a partial result.
stop_consumer() {
  local kids
  kids=$(cat "/proc/$consumer_pid/task/$consumer_pid/children" 2>/dev/null) || return 0
  # shellcheck disable=SC2086
  [ -z "$kids" ] || kill -TERM $kids 2>/dev/null || true
}
finish_consumer() { # finish_consumer TIMEOUT -> sets RESULT to the consumer's result line
  read_until "$consumer_fd" 'RESULT *' "$1" "$tmp/consumer.log" \
    || { cat "$tmp/consumer.err" >&2; die "the consumer gave no result within $1 s"; }
  RESULT=$REPLY
  exec {consumer_fd}<&-
  wait "$consumer_pid" || { say "consumer: not every prediction arrived (see the count column)"; failures=$((failures + 1)); }
  forget_pid "$consumer_pid"
  consumer_pid=
}
field() { # field NAME "k=v k=v ..." -> v
  local kv
  for kv in $2; do case "$kv" in "$1"=*) printf '%s' "${kv#*=}"; return ;; esac; done
  printf 'NA'
}

# predbridged's spool: in the temporary directory (the disk the broker writes to as well), or under
# PB_BENCH_SPOOL_PARENT (e.g. another disk, or /dev/shm to take the disk out of the measurement).
spool_dir=${PB_BENCH_SPOOL_PARENT:+$PB_BENCH_SPOOL_PARENT/pb-bench-spool-$$}
spool_dir=${spool_dir:-$tmp/spool}
results=$tmp/results.tsv
: >"$results"
pairs=$tmp/rounds.tsv # the rows of rounds 2.. of the full-speed scenarios (PB_BENCH_ROUNDS), not in the table
: >"$pairs"
add_row() { # add_row GROUP TOOL SIZE RESULTLINE CPU_S RSS_KB
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(field count "$4")" "$(field rate "$4")" \
    "$(field p50_ms "$4")" "$(field p99_ms "$4")" "$(field p999_ms "$4")" "$5" "$6" >>"$results"
}

proc_cpu_ticks() { # utime+stime of PID in clock ticks
  local stat; stat=$(<"/proc/$1/stat")
  stat=${stat##*) }   # fields after the command name, starting with field 3 (state)
  read -r -a f <<<"$stat"
  echo $(( f[11] + f[12] ))
}
hz=$(getconf CLK_TCK)
ticks_s() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'; }
proc_thread_ticks() { # "MAIN OTHER": utime+stime of PID's main thread and of all its other threads
  local t main=0 other=0 v
  for t in /proc/"$1"/task/*; do
    v=$(proc_cpu_ticks "$1/task/${t##*/}") || continue
    if [ "${t##*/}" = "$1" ]; then main=$((main + v)); else other=$((other + v)); fi
  done
  echo "$main $other"
}

# ---- predbridged ----
run_predbridged() { # run_predbridged GROUP SIZE N WARMUP ACK RATE [FSYNC]
  local group=$1 size=$2 n=$3 warm=$4 ack=$5 rate=$6 fsync=${7:-interval}
  local tool=predbridged
  [ "$fsync" = interval ] || tool="predbridged fsync=$fsync"
  new_topic
  local topic=$TOPIC
  local sock=$tmp/pbd.sock conf=$tmp/predbridged.conf
  cat >"$conf" <<CONF
# Generated by scripts/bench.sh
socket.path = $sock
socket.mode = 0600
bootstrap.servers = $PB_BOOTSTRAP
topic = $topic
tls.ca = $C/ca.crt
tls.cert = $C/predbridged.crt
tls.key = $C/predbridged.key
producer.compression = lz4
producer.linger_ms = 5
producer.flush_timeout_ms = 10000
spool.dir = $spool_dir
spool.fsync = $fsync
${PB_BENCH_FSYNC_INTERVAL_MS:+spool.fsync_interval_ms = $PB_BENCH_FSYNC_INTERVAL_MS}
log.level = info
${PB_BENCH_PREDBRIDGED_CONF:-}
CONF
  rm -rf "$spool_dir"
  mkfifo "$tmp/pbd.fifo"
  "$predbridged" --config "$conf" 2>"$tmp/pbd.fifo" &
  local pid=$! fd
  pids+=("$pid")
  exec {fd}<"$tmp/pbd.fifo"
  rm -f "$tmp/pbd.fifo"
  read_until "$fd" '*listening on*' 30 "$tmp/predbridged.log" \
    || { cat "$tmp/predbridged.log" >&2; die "predbridged did not start listening within 30 s"; }
  cat <&"$fd" >>"$tmp/predbridged.log" &
  local drain=$!
  exec {fd}<&-
  start_consumer "$topic" "$n" "$warm" 300
  # A long-running sidecar is connected before load arrives: one prediction acknowledged as delivered
  # (seq N, which the consumer ignores) proves the producer has its connection and idempotent PID.
  timeout --kill-after=5 70 "$bin/pb_loadgen" --socket "$sock" -n 1 -w 1 --ack delivered --first-seq "$n" \
    --timeout 60 2>>"$tmp/loadgen.log" \
    || die "predbridged did not deliver the warm-up prediction (log: $tmp/predbridged.log)"
  local rss0; rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  local cpu0 th0; cpu0=$(proc_cpu_ticks "$pid"); th0=$(proc_thread_ticks "$pid")
  local args=(--socket "$sock" -n "$n" -s "$size" -w "$PB_BENCH_WRITERS" --timeout 240)
  [ "$ack" = none ] || args+=(--ack "$ack")
  [ "$rate" = 0 ] || args+=(--rate "$rate")
  timeout --kill-after=5 250 "$bin/pb_loadgen" "${args[@]}" 2>>"$tmp/loadgen.log" \
    || { tail -n 3 "$tmp/loadgen.log" >&2; say "load generator failed (predbridged $group)"; stop_consumer; }
  finish_consumer 320
  local cpu1 hwm th1
  cpu1=$(proc_cpu_ticks "$pid"); th1=$(proc_thread_ticks "$pid")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || say "predbridged exited with status $? (log: $tmp/predbridged.log)"
  forget_pid "$pid"
  wait "$drain" || true
  add_row "$group" "$tool" "$size" "$RESULT" "$(ticks_s $((cpu1 - cpu0)))" "$hwm"
  local m0 o0 m1 o1; read -r m0 o0 <<<"$th0"; read -r m1 o1 <<<"$th1"
  say "$tool $group: $RESULT (RSS after start-up ${rss0} kB, peak ${hwm} kB;" \
      "CPU s: event-loop thread $(ticks_s $((m1 - m0))), librdkafka threads $(ticks_s $((o1 - o0))))"
}

# ---- raw librdkafka and kcat: the same generator writes the NDJSON into their stdin ----
run_pipe() { # run_pipe GROUP TOOL SIZE N WARMUP RATE
  local group=$1 tool=$2 size=$3 n=$4 warm=$5 rate=$6
  new_topic
  local topic=$TOPIC
  local gen=("$bin/pb_loadgen" --stdout -n "$n" -s "$size" --timeout 240)
  [ "$rate" = 0 ] || gen+=(--rate "$rate")
  local cmd
  local file=$spool_dir.raw-file.ndjson # beside the spool: the same file system
  if [[ $tool == raw* ]]; then
    cmd=("$bin/pb_rawproducer" -b "$PB_BOOTSTRAP" -t "$topic" --ca "$C/ca.crt" --cert "$C/predbridged.crt"
         --key "$C/predbridged.key" --compression lz4 --linger-ms 5 --timeout 240)
    [ "${PB_BENCH_RAW_HEADERS:-0}" = 0 ] && [ "$tool" = raw ] || cmd+=(--headers)
    # The raw rows that do part of predbridged's work run with glibc's fast bins off, as predbridged
    # does (main.c): otherwise they measure glibc's fast-bin consolidation rather than the headers.
    [ "$tool" = raw ] || cmd=(env GLIBC_TUNABLES=glibc.malloc.mxfast=0 "${cmd[@]}")
    rm -f "$file"
    [ "$tool" = raw+headers+file ] && cmd+=(--file "$file")
  else
    cmd=(kcat -P -b "$PB_BOOTSTRAP" -t "$topic" -X security.protocol=ssl -X ssl.ca.location="$C/ca.crt"
         -X ssl.certificate.location="$C/predbridged.crt" -X ssl.key.location="$C/predbridged.key"
         -X ssl.endpoint.identification.algorithm=https -X enable.ssl.certificate.verification=true
         -X acks=all -X enable.idempotence=true -X compression.codec=lz4 -X linger.ms=5 -X message.timeout.ms=0
         -X socket.nagle.disable=true)
  fi
  start_consumer "$topic" "$n" "$warm" 300
  timeout --kill-after=5 250 "${gen[@]}" 2>>"$tmp/loadgen.log" \
    | timeout --kill-after=5 250 /usr/bin/time -f '%U %S %M' -o "$tmp/time.out" "${cmd[@]}" 2>>"$tmp/$tool.log" \
    || { tail -n 3 "$tmp/$tool.log" >&2; say "$tool failed ($group)"; stop_consumer; }
  finish_consumer 320
  rm -f "$file"
  local u s m
  read -r u s m <"$tmp/time.out" || die "no resource usage from /usr/bin/time for $tool"
  add_row "$group" "$tool" "$size" "$RESULT" "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')" "$m"
  say "$tool $group: $RESULT"
  if [ "$tool" = raw ] && [ "$rate" = 0 ] && [ -z "${FILLED_TOPIC:-}" ]; then
    FILLED_TOPIC=$topic FILLED_N=$n FILLED_SIZE=$size
  fi
}

# Consumer throughput: each consumer drains the topic the raw producer filled (all N from offset 0).
# One run of SOURCE; the result goes to $tmp/drains (rate, CPU s, peak RSS kB, result line).
run_consume() { # run_consume GROUP SOURCE
  start_consumer "$FILLED_TOPIC" "$FILLED_N" 0 300 "$2"
  finish_consumer 320
  local u s m
  read -r u s m <"$tmp/consumer-time.out" || die "no resource usage from /usr/bin/time for the consumer"
  printf '%s\t%s\t%s\t%s\t%s\n' "$2" "$(field rate "$RESULT")" \
    "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')" "$m" "$RESULT" >>"$tmp/drains"
  say "consumer $2 $1: $RESULT"
}
# The drain rates vary from run to run more than the sources differ: each source drains
# PB_BENCH_DRAIN_RUNS times, the sources taking turns, and the row is the run with the median rate.
# Steady-state rate: records from the first to the last arrival, so what is compared is the cost of
# fetching and dispatching, not connecting or (libpredbridge) joining a group; the whole drain,
# start-up included, is in the log line (drain_rate).
run_drains() { # run_drains GROUP
  local runs=${PB_BENCH_DRAIN_RUNS:-3} r source sources
  sources=$("$bin/pb_benchconsumer" --list-sources)
  : >"$tmp/drains"
  for ((r = 1; r <= runs; r++)); do
    for source in $sources; do run_consume "$1" "$source"; done
  done
  for source in $sources; do
    local line rates
    rates=$(awk -F'\t' -v s="$source" '$1 == s { printf "%s ", $2 }' "$tmp/drains")
    line=$(awk -F'\t' -v s="$source" '$1 == s' "$tmp/drains" | sort -t$'\t' -k2,2n | awk -v n="$runs" 'NR == int((n + 1) / 2)')
    IFS=$'\t' read -r _ _ cpu rss result <<<"$line"
    add_row "$1" "consumer:$source" "$FILLED_SIZE" \
      "$(sed 's/ drain_rate=[^ ]*//; s/p50_ms=[^ ]*//; s/p99_ms=[^ ]*//; s/p999_ms=[^ ]*//' <<<"$result")" "$cpu" "$rss"
    say "consumer $source $1: rates of $runs runs: $rates(median in the table)"
    echo "drain rates, consumer:$source: $rates" >>"$tmp/drain-rates"
    # CPU time of the polling (application) thread per record: what each loop costs per record,
    # which the hypervisor taking the CPUs away does not inflate the way it does rates.
    local cpus
    cpus=$(awk -F'\t' -v s="$source" '$1 == s { if (match($5, /app_cpu_us=[0-9.]+/)) print substr($5, RSTART + 11, RLENGTH - 11) }' \
      "$tmp/drains" | awk '{ v[NR] = $1 + 0; l = l " " $1 }
        END { for (a = 1; a <= NR; a++) for (b = a + 1; b <= NR; b++) if (v[b] < v[a]) { x = v[a]; v[a] = v[b]; v[b] = x }
              if (NR) printf "%s (median %.3f)", substr(l, 2), v[int((NR + 1) / 2)] }')
    [ -z "$cpus" ] || echo "polling thread CPU per record (us), consumer:$source: $cpus" >>"$tmp/drain-cpu"
  done
}

# scenario GROUP SIZE N ACK RATE: predbridged, then (fire-and-forget only) raw and kcat. The first
# predictions (1 s worth when paced, else 5 %) are a warm-up: they must arrive but are not measured.
# With a sixth argument "nofsync", predbridged also runs with spool.fsync = never (the spool's cost).
scenario() {
  if [ -n "${PB_BENCH_ONLY:-}" ] && ! [[ $1 =~ $PB_BENCH_ONLY ]]; then return 0; fi
  local warm=$(( $5 > 0 ? $5 : $3 / 20 ))
  # Each scenario starts with the disk idle: the previous one leaves gigabytes of the broker's log
  # dirty, and their write-back made this one's fdatasyncs slow (the 300 B acc row's spool cost was
  # 0.70 after the 300 B ff rounds, 0.99 alone). sync returns once they are written.
  sync
  # One rate of each tool is not enough to compare them on a shared machine: at full speed,
  # PB_BENCH_ROUNDS rounds, the tools taking turns. Round 1 goes to the table, the others into
  # $pairs; the report gives every rate and ratios of the medians.
  local k main=$results rounds_here=1
  [ "${6:-}" = nofsync ] && [ "$5" = 0 ] && rounds_here=$rounds
  for ((k = 1; k <= rounds_here; k++)); do
    [ "$k" = 1 ] || results=$pairs
    run_predbridged "$1" "$2" "$3" "$warm" "$4" "$5"
    [ "${6:-}" = nofsync ] && run_predbridged "$1" "$2" "$3" "$warm" "$4" "$5" never
    if [ "$4" = none ]; then
      run_pipe "$1" raw "$2" "$3" "$warm" "$5"
      # The same raw producer sending predbridged's four headers with every record (how much of the
      # gap to raw is librdkafka's cost of the headers), and doing that while appending every record
      # to a file as predbridged's spool does with spool.fsync = never (how much is left for
      # predbridged's own work). Fire-and-forget at full speed only.
      if [ "$5" = 0 ] && [ "${6:-}" = nofsync ]; then
        run_pipe "$1" raw+headers "$2" "$3" "$warm" "$5"
        run_pipe "$1" raw+headers+file "$2" "$3" "$warm" "$5"
      fi
      run_pipe "$1" kcat "$2" "$3" "$warm" "$5"
    fi
    results=$main
  done
}

# A freshly started broker (JIT, page cache) would penalise whichever tool runs first: warm it with
# 100,000 records through the raw producer into a throw-away topic first.
new_topic
say "warming up the broker (topic $TOPIC)"
timeout --kill-after=5 120 "$bin/pb_loadgen" --stdout -n 100000 -s 300 --timeout 100 2>>"$tmp/loadgen.log" \
  | timeout --kill-after=5 120 "$bin/pb_rawproducer" -b "$PB_BOOTSTRAP" -t "$TOPIC" --ca "$C/ca.crt" \
      --cert "$C/predbridged.crt" --key "$C/predbridged.key" --timeout 100 2>>"$tmp/raw.log" \
  || { tail -n 3 "$tmp/raw.log" >&2; die "the broker warm-up failed"; }

rate_secs=${PB_BENCH_RATE_SECS:-$([ "$quick" = 1 ] && echo 3 || echo 10)}
rounds=${PB_BENCH_ROUNDS:-$([ "$quick" = 1 ] && echo 1 || echo 5)}
if [ "$quick" = 1 ]; then
  n300=${PB_BENCH_N300:-50000}
  scenario "300B ff" 300 "$n300" none 0 nofsync
else
  n300=${PB_BENCH_N300:-300000}
  n4k=${PB_BENCH_N4K:-50000}
  scenario "300B ff" 300 "$n300" none 0 nofsync
  scenario "300B ack" 300 "$n300" delivered 0 nofsync
  # --ack accepted waits for the spool's fsync (group commit): the row where the fsync policy costs most.
  scenario "300B acc" 300 "$n300" accepted 0 nofsync
  scenario "4KiB ff" 4096 "$n4k" none 0 nofsync
  scenario "4KiB ack" 4096 "$n4k" delivered 0 nofsync
fi
# The paced latency point: PB_BENCH_PACED_RUNS times (3 in a full run), the tools taking turns; the
# tail of one run on two shared vCPUs is mostly what else the machine did in those seconds.
paced_runs=${PB_BENCH_PACED_RUNS:-$([ "$quick" = 1 ] && echo 1 || echo 3)}
for ((k = 1; k <= paced_runs; k++)); do
  group="300B 10k/s"
  [ "$paced_runs" -gt 1 ] && group="10k/s run$k"
  scenario "$group" 300 $((10000 * (rate_secs + 1))) none 10000 "$([ "${PB_BENCH_PACED_NOFSYNC:-0}" = 1 ] && echo nofsync)"
done
# Consumer throughput (full run only): the topic the first fire-and-forget raw run filled (300 B).
if [ "$quick" = 0 ] && [ -n "${FILLED_TOPIC:-}" ]; then
  run_drains "300B drain"
fi

# ---- report ----
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$repo/scripts/kafka/pom.xml")
kcat_version=$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p')
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
source_rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
kind=$([ "$quick" = 1 ] && echo quick || echo full)
built=$([ "$build" = 1 ] || echo ", binaries built $(date -u -r "$predbridged" +%H:%M:%SZ)")
{
  echo
  echo "predbridge benchmark ($kind), $(date -u +%Y-%m-%dT%H:%M:%SZ), source $source_rev$built"
  read -r cpu_total1 cpu_steal1 < <(cpu_times)
  steal=$(awk -v t=$((cpu_total1 - cpu_total0)) -v s=$((cpu_steal1 - cpu_steal0)) 'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }')
  echo "machine: $(nproc) CPUs ($cpu_model), $mem RAM, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg), CPU stolen by the hypervisor during the run: $steal %"
  echo "librdkafka $(pkg-config --modversion rdkafka), Kafka $kafka_version (single KRaft node on loopback," \
       "mTLS TLS 1.3), kcat $kcat_version"
  echo "producer settings everywhere: acks=all, enable.idempotence, lz4, linger.ms=5, socket.nagle.disable; predbridged: $PB_BENCH_WRITERS writer connections"
  echo "throughput: measured predictions / (last arrival - first arrival) at the consumer; latency: arrival - sent_ns"
  echo "(the first 5 % of each run, or the first second when paced, is warm-up: delivered, not measured)"
  echo
  awk -F'\t' '
    FILENAME == ARGV[1] { np++; pg[np] = $1; pt[np] = $2; pr[np] = $5; next }
    { key = $1; tool = $2; rate[key, tool] = $5 }
    { rows[++NR2] = $0 }
    function num(x) { return x == "NA" ? "-" : x }
    END {
      fmt = "%-11s %-24s %8s %9s %7s %8s %8s %8s %6s %7s %6s %6s\n"
      printf fmt, "scenario", "tool", "count", "pred/s", "MB/s", "p50 ms", "p99 ms", "p99.9ms", "CPU s", "RSS MB", "/raw", "/kcat"
      for (i = 1; i <= NR2; i++) {
        split(rows[i], f, "\t")
        r = f[5] + 0; vr = "-"; vk = "-"
        sz = f[3] + 0
        base = f[1]; sub(/ (ack|acc)$/, " ff", base)
        if (f[2] ~ /^predbridged/) {
          if (rate[base, "raw"] > 0) vr = sprintf("%.2f", r / rate[base, "raw"])
          if (rate[base, "kcat"] > 0) vk = sprintf("%.2f", r / rate[base, "kcat"])
        }
        if (f[2] == "consumer:libpredbridge" && rate[f[1], "consumer:rdkafka-group"] > 0)
          vr = sprintf("%.2f", r / rate[f[1], "consumer:rdkafka-group"])
        printf fmt, f[1], f[2], f[4], sprintf("%.0f", r), sprintf("%.1f", r * sz / 1e6), num(f[6]), num(f[7]), num(f[8]),
               f[9], sprintf("%.1f", f[10] / 1024), vr, vk
      }
      for (i = 1; i <= NR2; i++) {
        split(rows[i], f, "\t")
        if (f[2] == "consumer:libpredbridge" && rate[f[1], "consumer:rdkafka-group-check"] > 0 &&
            rate[f[1], "consumer:rdkafka-group"] > 0)
          printf "dispatch, %s: libpredbridge / raw group loop checking each record the same way = %.2f (rdkafka-group-check / rdkafka-group = %.2f)\n",
                 f[1], f[5] / rate[f[1], "consumer:rdkafka-group-check"],
                 rate[f[1], "consumer:rdkafka-group-check"] / rate[f[1], "consumer:rdkafka-group"]
      }
      for (i = 1; i <= NR2; i++) {
        split(rows[i], f, "\t")
        if (f[2] == "predbridged" && rate[f[1], "raw+headers"] > 0 && rate[f[1], "raw"] > 0)
          printf "headers, %s: predbridged / raw librdkafka sending the same four headers = %.2f (raw+headers / raw = %.2f)\n",
                 f[1], f[5] / rate[f[1], "raw+headers"], rate[f[1], "raw+headers"] / rate[f[1], "raw"]
      }
      for (i = 1; i <= NR2; i++) {
        split(rows[i], f, "\t")
        if (f[1] ~ /^10k\/s run/) { p99[f[2]] = p99[f[2]] " " f[7]; np99[f[2]]++ }
      }
      for (t in p99) {
        n = split(substr(p99[t], 2), v, " ")
        for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] + 0 < v[a] + 0) { x = v[a]; v[a] = v[b]; v[b] = x }
        printf "p99 ms at 10,000/s, %s: %s (median %s)\n", t, substr(p99[t], 2), v[int((n + 1) / 2)]
      }
      # Full-speed scenarios with more than one round: every rate of each tool (round 1 is in the
      # table) and the ratios of the medians, which is what the targets are judged by.
      for (i = 1; i <= NR2; i++) {
        split(rows[i], f, "\t")
        g = f[1]
        if (f[2] != "predbridged" || rate[g, "raw"] <= 0) continue
        nr = 0
        for (j = 1; j <= np; j++) if (pg[j] == g && pt[j] == "predbridged") nr++
        if (nr == 0) continue
        split("predbridged|predbridged fsync=never|raw|raw+headers|raw+headers+file|kcat", tools, "|")
        for (t = 1; t <= 6; t++) {
          tool = tools[t]
          if (!((g, tool) in rate)) continue
          n = 1; v[1] = rate[g, tool] + 0; list = sprintf("%.0f", v[1]); roundr[tool, 1] = v[1]
          for (j = 1; j <= np; j++)
            if (pg[j] == g && pt[j] == tool) { v[++n] = pr[j] + 0; list = list " " sprintf("%.0f", v[n]); roundr[tool, n] = v[n] }
          for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] < v[a]) { x = v[a]; v[a] = v[b]; v[b] = x }
          med[tool] = v[int((n + 1) / 2)]; nrounds[tool] = n
          printf "throughput, %s, %s: %s pred/s (median %.0f)\n", g, tool, list, med[tool]
        }
        line = sprintf("throughput, %s, medians of %d rounds: predbridged / raw = %.2f", g, nrounds["predbridged"],
                       med["predbridged"] / med["raw"])
        if (med["kcat"] > 0) line = line sprintf(", predbridged / kcat = %.2f", med["predbridged"] / med["kcat"])
        if (med["raw+headers"] > 0) line = line sprintf(", predbridged / raw+headers = %.2f", med["predbridged"] / med["raw+headers"])
        print line
        if (med["raw+headers+file"] > 0)
          printf "floor, %s, medians: raw+headers / raw = %.2f, raw+headers+file / raw = %.2f; predbridged fsync=never / raw+headers+file = %.2f\n",
                 g, med["raw+headers"] / med["raw"], med["raw+headers+file"] / med["raw"],
                 med["predbridged fsync=never"] / med["raw+headers+file"]
        lr = ""; lk = ""
        for (r = 1; r <= nrounds["predbridged"]; r++) {
          if (roundr["raw", r] > 0) lr = lr sprintf(" %.2f", roundr["predbridged", r] / roundr["raw", r])
          if (roundr["kcat", r] > 0) lk = lk sprintf(" %.2f", roundr["predbridged", r] / roundr["kcat", r])
        }
        printf "throughput, %s, each round: predbridged / raw =%s; predbridged / kcat =%s\n", g, lr, lk
        delete med; delete nrounds; delete roundr
      }
      for (i = 1; i <= NR2; i++) {
        split(rows[i], f, "\t")
        if (f[2] == "predbridged fsync=never" && rate[f[1], "predbridged fsync=never"] > 0) {
          # The table row pair first, then the extra pairs of the same group in the order they ran.
          list = sprintf("%.2f", rate[f[1], "predbridged"] / rate[f[1], "predbridged fsync=never"])
          n = 1; v[1] = list + 0
          for (j = 1; j <= np; j++)
            if (pg[j] == f[1] && pt[j] == "predbridged fsync=never" && j > 1 && pg[j - 1] == f[1] &&
                pt[j - 1] == "predbridged" && pr[j] > 0) {
              x = sprintf("%.2f", pr[j - 1] / pr[j]); list = list " " x; v[++n] = x + 0
            }
          for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] < v[a]) { x = v[a]; v[a] = v[b]; v[b] = x }
          printf "spool cost, %s: predbridged with spool.fsync=interval (default) / with spool.fsync=never = %s%s\n",
                 f[1], list, (n > 1 ? sprintf(" (median %.2f)", v[int((n + 1) / 2)]) : "")
        }
      }
    }' "$pairs" "$results"
  echo
  if [ "$quick" = 0 ]; then
    echo "ack rows: predbridged with --ack delivered (acc: --ack accepted, which waits for the spool's fsync), compared"
    echo "with the fire-and-forget raw/kcat rows of the same size."
    echo "drain rows: each consumer reads the topic the raw producer filled, from offset 0; rate from its first to its"
    echo "last record (start-up excluded: see drain_rate in the log); /raw there is libpredbridge / the raw librdkafka"
    echo "consumer that also uses a group (rdkafka-group: subscribe, store each offset after the record, commit);"
    echo "rdkafka assigns partitions without a group; rdkafka-group-check is rdkafka-group checking each record with"
    echo "libpredbridge's own check (pbrec_check: UTF-8, a JSON object, the required fields) before handling it, so"
    echo "libpredbridge / rdkafka-group-check is what the library adds beyond that check (view, dedup, callback, stats)."
    echo "CPU s and RSS MB are the consumer's (elsewhere the producer's)."
    echo "Each drain row is the median of ${PB_BENCH_DRAIN_RUNS:-3} runs, the sources taking turns:"
    [ -f "$tmp/drain-rates" ] && cat "$tmp/drain-rates"
    if [ -f "$tmp/drain-cpu" ]; then
      echo "CPU time of the thread that polls (the application's), per record, from the first to the last arrival:"
      cat "$tmp/drain-cpu"
    fi
  fi
} | tee "$tmp/table.txt"
if [ "$failures" -gt 0 ]; then
  die "$failures run(s) did not deliver every prediction: the rows with a short count are not valid (see the log above)"
fi
