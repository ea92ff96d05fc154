#!/bin/sh
# Redis as a workload: Debian's redis-server on the guest's loopback, loaded with
# `keys` values of `value_bytes` each, then driven by redis-benchmark (SET and GET
# over the whole keyspace, uniformly) with --csv output for the harness's adapter.
# Arguments are key=value, as for the C workloads (port: the server's, on 127.0.0.1); with wait=PATH it prints
# `ready pid=<redis-server's pid>` once loaded and waits for PATH before the timed phase.
# With batch_threads=N it also runs cpu_batch (a CPU-bound batch job) beside the server from the
# start, prints `roles latency=<server>,<this script> batch=<cpu_batch>` (redis-benchmark, started
# later by this script, inherits its CPUs), and adds the batch job's throughput in the timed phase.
# With batch_mib=M as well, the batch job starts first and touches M MiB of data before the server
# loads: on a machine with tiered memory the batch's data takes the fast node, the server's spills.
set -eu
keys=100000 value_bytes=4096 requests=50000 clients=8 port=6399 batch_threads=0 batch_mib=0 wait=
for arg in "$@"; do
    case $arg in
    keys=* | value_bytes=* | requests=* | clients=* | port=* | batch_threads=* | batch_mib=*)
        value=${arg#*=}
        case $value in '' | *[!0-9]*) echo "redis_load: $arg: not a whole number" >&2; exit 2 ;; esac
        eval "${arg%%=*}=\$value" ;;
    wait=*) wait=${arg#wait=} ;;
    *) echo "redis_load: unknown argument $arg (keys= value_bytes= requests= clients= port= batch_threads=" \
            "batch_mib= wait=)" >&2
       exit 2 ;;
    esac
done

dir=$(mktemp -d /tmp/redis-load.XXXXXX)
batch=
trap 'kill $batch 2>/dev/null; wait $batch 2>/dev/null; rm -rf "$dir"' EXIT
trap 'exit 143' INT TERM
if [ "$batch_threads" -gt 0 ] && [ "$batch_mib" -gt 0 ]; then
    cpu_batch "$batch_threads" "$batch_mib" "$dir/batch-ready" &
    batch=$!
    until [ -e "$dir/batch-ready" ]; do
        kill -0 "$batch" 2>/dev/null || { echo "redis_load: cpu_batch exited before touching its data" >&2; exit 1; }
        sleep 0.05
    done
fi
# No persistence: the dataset lives in memory only, which is what placement acts on.
redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/log" &
server=$!
trap 'kill $server $batch 2>/dev/null; wait $server $batch 2>/dev/null; rm -rf "$dir"' EXIT

tries=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 600 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "redis_load: redis-server did not answer on 127.0.0.1:$port" >&2
        cat "$dir/log" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.1
done

# One value per key, named as redis-benchmark's -r names them (key:%012d), so its GETs hit.
loaded=$(redis-cli -p "$port" eval "
local v = string.rep('x', tonumber(ARGV[2]))
for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', string.format('key:%012d', i), v) end
return redis.call('DBSIZE')" 0 "$keys" "$value_bytes")
if [ "$loaded" != "$keys" ]; then
    echo "redis_load: loading $keys keys left DBSIZE=$loaded" >&2
    exit 1
fi

if [ "$batch_threads" -gt 0 ]; then
    if [ -z "$batch" ]; then
        cpu_batch "$batch_threads" &
        batch=$!
    fi
    echo "roles latency=$server,$$ batch=$batch"
fi
if [ -n "$wait" ]; then
    echo "ready pid=$server"
    while [ ! -e "$wait" ]; do sleep 0.05; done
fi
[ -z "$batch" ] || kill -USR1 "$batch"
redis-benchmark -p "$port" -t set,get -n "$requests" -c "$clients" -r "$keys" -d "$value_bytes" --csv
if [ -n "$batch" ]; then
    kill -USR2 "$batch"
    wait "$batch"
    batch=
fi
