#!/usr/bin/env bash
# The benchmark of issue 5, in one run on this machine:
#
#   limit  wrk straight at a static fake Store served by nginx (requests/s);
#   peer   blackbox_exporter probing the same paths (status 200 and
#          "state": "Active" in the body), driven by wrk: probes/s and CPU
#          seconds per probe from /proc;
#   us     msfb_seat_exporter polling the same paths: checks/s and CPU
#          seconds per check (20k targets, 64 in flight, no rate limit), RSS,
#          scrape p99 idle and under full polling load (10k targets), a full
#          uncompressed scrape at 100k targets against nginx serving the same
#          bytes from a file, peak RSS over 10 cycles with scrapes at 100k,
#          and start-up to /-/healthy at 100k targets from a users file;
#          each of these in every metric profile of BENCH_PROFILES;
#   persist the state file (issue 12) at 100k targets: a save against a
#          cycle's CPU, scrape p99 while saves run against without, bytes
#          per target, start-up to every saved value on /metrics, peak RSS
#          over cycles with saves and after the restart;
#   bill   what Prometheus pays (issue 14): Debian's prometheus scraping the
#          exporter at 100k targets every 15 s, a fresh server per profile;
#          its head series and resident memory from its own /metrics after a
#          few scrapes, and its scrape_duration_seconds for the exporter
#          (gzip and OpenMetrics, as Prometheus asks): compact against full.
#
# It prints one table of the ratios against the goals. Every number is
# measured in this run, so the ratios hold on any machine; the absolute
# figures are this machine's. Runs on a fresh Debian machine with the Rust
# toolchain: it installs nginx-light, wrk, prometheus-blackbox-exporter,
# curl, python3 and time when missing (as root, or through sudo) and builds
# the release binary. Nothing is written outside a temporary directory, and
# only processes started here are stopped.
#
# Knobs (environment): BENCH_PORT_BASE (default 18480; five ports from it),
# BENCH_SECONDS (wrk runs, default 10), BENCH_LOAD_SAMPLES (scrapes under
# polling load to collect, default 300) and BENCH_LOAD_SECONDS (the most
# that may take, default 300), BENCH_CYCLES (cycles of the 100k RSS run, default 10),
# BENCH_KEEP=1 keeps the temporary directory. BENCH_PROFILES (default
# "full compact"): the [metrics] per_target profiles the scrape goals are
# measured in. BENCH_PARTS (default "poll scrape persist bill"): which parts
# run. BENCH_CYCLES also counts the saves the persist part scrapes through.
# BENCH_PROM_SCRAPES (default 6): scrapes each Prometheus takes.
# BENCH_BIG_TARGETS (default 100000) for a quick trial of the script.
set -euo pipefail
cd "$(dirname "$0")/.."

port_base=${BENCH_PORT_BASE:-18480}
seconds=${BENCH_SECONDS:-10}
load_seconds=${BENCH_LOAD_SECONDS:-300}
load_samples=${BENCH_LOAD_SAMPLES:-300}
cycles=${BENCH_CYCLES:-10}
profiles=${BENCH_PROFILES:-full compact}
parts=${BENCH_PARTS:-poll scrape persist bill}
prom_scrapes=${BENCH_PROM_SCRAPES:-6}
nginx_port=$port_base
blackbox_port=$((port_base + 1))
us_port=$((port_base + 2))
prom_port=$((port_base + 3))

products=4
poll_targets=20000 # "us": checks/s and CPU per check
scrape_targets=10000 # scrape p99 idle vs under polling load
big_targets=${BENCH_BIG_TARGETS:-100000} # full scrape, peak RSS, start-up, Prometheus
concurrency=64

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

# --- tools -------------------------------------------------------------------
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -x /usr/bin/time ] || need+=(time)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ "${#need[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

log "building the release binary"
cargo build --release --quiet
exporter_bin=$PWD/target/release/msfb_seat_exporter

# --- scratch space and cleanup ---------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/msfb-bench.XXXXXX")
chmod 755 "$work" # nginx workers run as an unprivileged user
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
stop() { # stop one process started here, by its pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the static fake Store ---------------------------------------------------------
# Products 9NBLGGH4R000..003, SKU 0016; users user000000@bench.example ...
# Every tenth user (index ending in 9) has no seat file: nginx answers 404
# with an item-type body, like the Store.
users_per_product=$((big_targets / products))
www=$work/www
log "laying out $big_targets seat files for nginx"
mkdir -p "$www" "$work/nginx-tmp"
awk -v www="$www" -v n="$users_per_product" -v products="$products" 'BEGIN {
    for (p = 0; p < products; p++) {
        pid = sprintf("9NBLGGH4R%03d", p)
        dir = www "/V1/Inventory/" pid "/0016/Seats"
        system("mkdir -p " dir)
        for (i = 0; i < n; i++) {
            if (i % 10 == 9) continue
            upn = sprintf("user%06d@bench.example", i)
            f = dir "/" upn
            printf "{\"assignedTo\": \"%s\", \"dateAssigned\": \"2024-05-06T07:08:09.1234567Z\", \"productId\": \"%s\", \"skuId\": \"0016\", \"state\": \"Active\"}\n", upn, pid > f
            close(f)
        }
    }
}'
printf '%s\n' '{"code":"NotFound","message":"Seat not found.","data":[{"key":"ItemType","value":"Seat"}]}' >"$www/notfound.json"
chmod -R a+rX "$www"

# Users files and the request paths of the first N targets.
users_file() { # users_file COUNT -> path of a file with COUNT/products users
    local per=$(($1 / products)) f=$work/users-$1.txt
    awk -v n="$per" 'BEGIN { for (i = 0; i < n; i++) printf "user%06d@bench.example\n", i }' >"$f"
    echo "$f"
}
paths_file() { # paths_file COUNT -> path of a file with one request path a line
    local per=$(($1 / products)) f=$work/paths-$1.txt
    awk -v n="$per" -v products="$products" 'BEGIN {
        for (i = 0; i < n; i++) for (p = 0; p < products; p++)
            printf "/V1/Inventory/9NBLGGH4R%03d/0016/Seats/user%06d@bench.example\n", p, i
    }' >"$f"
    echo "$f"
}

cat >"$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $work/nginx-tmp/body;
    proxy_temp_path $work/nginx-tmp/proxy;
    fastcgi_temp_path $work/nginx-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-tmp/uwsgi;
    scgi_temp_path $work/nginx-tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $www;
        # The token endpoint: one fixed token for every POST.
        location = /bench.onmicrosoft.com/oauth2/token {
            return 200 '{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","access_token":"bench-token"}';
        }
        location /V1/Inventory/ {
            error_page 404 /notfound.json;
        }
        location = /notfound.json { internal; }
        # The exporter's 100k-target scrape, served as a file for comparison.
        location = /metrics.prom { default_type "text/plain; version=0.0.4"; }
    }
}
EOF
"$nginx_bin" -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
pids+=($!)
wait_http() { # wait_http URL: until it answers (any status), at most 30 s
    for _ in $(seq 3000); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.01
    done
    log "no answer from $1"
    return 1
}
wait_http "http://127.0.0.1:$nginx_port/notfound"
store=http://127.0.0.1:$nginx_port

# --- helpers -----------------------------------------------------------------------
cpu_ticks() { # utime + stime of a pid, in clock ticks (fields after the comm)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)
metric() { # metric FILE NAME: the value of an unlabelled sample
    awk -v n="$2" '$1 == n { print $2 }' "$1"
}
wrk_rate() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_count() { awk '/requests in/ { print $1 }' "$1"; }

write_config() { # write_config FILE TARGETS INTERVAL PORT [PROFILE]
    local users
    users=$(users_file "$2")
    {
        printf '[web]\nlisten_address = "127.0.0.1:%s"\n\n' "$4"
        printf '[metrics]\nper_target = "%s"\n\n' "${5:-full}"
        printf '[store]\nbase_url = "%s"\ntimeout = "5s"\nmax_concurrency = %s\nmax_requests_per_second = 0\n\n' \
            "$store" "$concurrency"
        printf '[auth]\ntenant_id = "bench.onmicrosoft.com"\nclient_id = "bench"\nclient_secret_file = "secret"\n'
        printf 'token_url = "%s/bench.onmicrosoft.com/oauth2/token"\n\n' "$store"
        printf '[poll]\ninterval = "%s"\n\n[inventory]\nenabled = false\n\n' "$3"
        for p in $(seq 0 $((products - 1))); do
            printf '[[products]]\nproduct_id = "9NBLGGH4R%03d"\nsku_id = "0016"\nusers_file = "%s"\n\n' "$p" "$users"
        done
    } >"$1"
}
printf 'bench-secret\n' >"$work/secret"
mkdir -p "$work/us"
cp "$work/secret" "$work/us/secret"

# Python for what bash does badly: a keep-alive scrape client that records
# each scrape's latency with the exporter's request counter, and percentiles.
cat >"$work/scrapes.py" <<'EOF'
"""Scrapes URL back to back on one keep-alive connection until WANT scrapes
were taken under polling load, or for at most SECONDS. Each body carries
msfb_api_requests_total{operation="get_seat"} (read at the end of the
render), so two scrapes tell whether the poller made requests between them.
A cycle at full speed has no pause, so a scrape is "under load" when
requests were made before it started (between the two scrapes before it)
and after it ended (between it and the next): the cycle spans it. It is
"idle" when no request was made from the end of the scrape before it to the
end of the next one. Prints: idle_p99_ms load_p99_ms idle_n load_n
median_polling_rate."""
import http.client, re, sys, time, urllib.parse

url, seconds, want = urllib.parse.urlsplit(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
counter = re.compile(rb'^msfb_api_requests_total\{[^}]*operation="get_seat"[^}]*\} (\S+)$', re.M)
conn = http.client.HTTPConnection(url.hostname, url.port)


def classify(rows):
    rates = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in zip(rows, rows[1:])]
    busy = sorted(r for r in rates if r > 0)
    median = busy[len(busy) // 2] if busy else 0.0
    idle, load = [], []
    for i in range(2, len(rows) - 1):
        earlier, before, after = rates[i - 2], rates[i - 1], rates[i]
        if before == 0 and after == 0:
            idle.append(rows[i][1])
        elif earlier > 0 and before > 0 and after > 0:
            load.append(rows[i][1])
    return idle, load, median


rows = []
start = time.monotonic()
checked = start
while time.monotonic() < start + seconds:
    t0 = time.monotonic()
    conn.request("GET", url.path)
    body = conn.getresponse().read()
    t1 = time.monotonic()
    count = sum(float(v) for v in counter.findall(body[-300000:]))
    rows.append(((t0 + t1) / 2, t1 - t0, count))
    if t1 - checked > 10:
        checked = t1
        if len(classify(rows)[1]) >= want:
            break
idle, load, rate = classify(rows)


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000 if xs else float("nan")


print(f"{p99(idle):.2f} {p99(load):.2f} {len(idle)} {len(load)} {rate:.0f}")
EOF
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# --- 1.-3. poll: limit, peer, us (the profile does not matter) ------------------
poll_part() {
# --- 1. limit: wrk straight at nginx ----------------------------------------------
poll_paths=$(paths_file "$poll_targets")
cat >"$work/paths.lua" <<'EOF'
-- Cycles through the request paths in BENCH_PATHS, each thread from its own
-- offset, with the headers the exporter sends.
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = 0
local headers = { ["Authorization"] = "Bearer bench-token", ["Accept"] = "application/json" }
function setup(thread) thread:set("offset", math.random(#paths)) end
function init() i = tonumber(offset) or 0 end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
EOF
log "limit: wrk -c$concurrency at nginx for ${seconds}s"
BENCH_PATHS=$poll_paths wrk -t2 -c"$concurrency" -d"${seconds}s" -s "$work/paths.lua" "$store" >"$work/wrk-nginx.txt"
limit_rps=$(wrk_rate "$work/wrk-nginx.txt")

# --- 2. peer: blackbox_exporter probing the same paths -------------------------------
cat >"$work/blackbox.yml" <<'EOF'
modules:
  msfb_seat:
    prober: http
    timeout: 5s
    http:
      method: GET
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      headers:
        Authorization: Bearer bench-token
        Accept: application/json
      fail_if_body_not_matches_regexp:
        - '"state": "Active"'
EOF
probe_paths=$work/probe-paths.txt
awk -v store="$store" '{
    t = store $0; gsub(/:/, "%3A", t); gsub(/\//, "%2F", t); gsub(/@/, "%40", t)
    print "/probe?module=msfb_seat&target=" t
}' "$poll_paths" >"$probe_paths"
prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
    --web.listen-address="127.0.0.1:$blackbox_port" --log.level=warn >"$work/blackbox.log" 2>&1 &
blackbox_pid=$!
pids+=("$blackbox_pid")
wait_http "http://127.0.0.1:$blackbox_port/-/healthy"
log "peer: wrk -c$concurrency at blackbox_exporter for ${seconds}s"
ticks0=$(cpu_ticks "$blackbox_pid")
BENCH_PATHS=$probe_paths wrk -t2 -c"$concurrency" -d"${seconds}s" -s "$work/paths.lua" \
    "http://127.0.0.1:$blackbox_port" >"$work/wrk-blackbox.txt"
ticks1=$(cpu_ticks "$blackbox_pid")
peer_rps=$(wrk_rate "$work/wrk-blackbox.txt")
peer_probes=$(wrk_count "$work/wrk-blackbox.txt")
peer_cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$hz" -v n="$peer_probes" 'BEGIN { printf "%.3e", t / hz / n }')
stop "$blackbox_pid"

# --- 3. us: checks/s and CPU per check (20k targets, --once, 5 runs) ----------------
write_config "$work/us/poll.toml" "$poll_targets" 10s "$us_port"
log "us: --once over $poll_targets targets, 5 runs"
: >"$work/once.txt"
for _ in 1 2 3 4 5; do
    /usr/bin/time -f '%e %U %S %M' -o "$work/once-time.txt" \
        "$exporter_bin" --config.file="$work/us/poll.toml" --once --log.level=error >"$work/once.prom" || {
        log "--once was not conclusive: see $work/once.prom"
        exit 1
    }
    read -r wall user sys maxrss <"$work/once-time.txt"
    duration=$(metric "$work/once.prom" msfb_poll_cycle_duration_seconds)
    awk -v n="$poll_targets" -v d="$duration" -v u="$user" -v s="$sys" -v m="$maxrss" -v w="$wall" \
        'BEGIN { printf "%.0f %.3e %.1f %.2f\n", n / d, (u + s) / n, m / 1024, w }' >>"$work/once.txt"
done
us_rps=$(awk '{ print $1 }' "$work/once.txt" | median)
us_cpu=$(awk '{ print $2 }' "$work/once.txt" | median)
us_rss=$(awk '{ print $3 }' "$work/once.txt" | median)

}

# --- 4. scrape p99, idle and under full polling load (10k targets) -----------------
# --- 5. 100k targets: start-up, full scrape against nginx, peak RSS -----------------
# Both in one profile; each adds its rows to the table.
scrape_goals() { # scrape_goals PROFILE
    local profile=$1 scrape_pid big_pid t0 t1 startup scrape_bytes full_us full_nginx gzip_us
    local idle_p99 load_p99 idle_n load_n rss_10k done_cycles big_cycle rss_100k
    write_config "$work/us/scrape.toml" "$scrape_targets" 10s "$us_port" "$profile"
    log "us ($profile): scrapes of $scrape_targets targets while cycles run every 10s, until $load_samples fall in a cycle (at most ${load_seconds}s)"
    "$exporter_bin" --config.file="$work/us/scrape.toml" --log.level=error >"$work/scrape.log" 2>&1 &
    scrape_pid=$!
    pids+=("$scrape_pid")
    wait_http "http://127.0.0.1:$us_port/-/healthy"
    read -r idle_p99 load_p99 idle_n load_n _ < <(python3 "$work/scrapes.py" \
        "http://127.0.0.1:$us_port/metrics" "$load_seconds" "$load_samples")
    rss_10k=$(awk '/^VmHWM:/ { print $2 }' "/proc/$scrape_pid/status")
    stop "$scrape_pid"

    write_config "$work/us/big.toml" "$big_targets" 1h "$us_port" "$profile"
    log "us ($profile): start-up with $big_targets targets"
    t0=$(date +%s%N)
    "$exporter_bin" --config.file="$work/us/big.toml" --log.level=error >"$work/big.log" 2>&1 &
    big_pid=$!
    pids+=("$big_pid")
    until curl -sf -o /dev/null "http://127.0.0.1:$us_port/-/healthy"; do
        kill -0 "$big_pid" 2>/dev/null || { log "exporter died: $(cat "$work/big.log")"; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    startup=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.3f", d / 1e9 }')
    until curl -sf -o /dev/null "http://127.0.0.1:$us_port/-/ready"; do sleep 0.1; done
    curl -s -o "$www/metrics.prom" "http://127.0.0.1:$us_port/metrics"
    chmod a+r "$www/metrics.prom"
    scrape_bytes=$(stat -c %s "$www/metrics.prom")
    log "us ($profile): full scrape of $big_targets targets ($scrape_bytes bytes) against nginx serving it as a file"
    # Fetched in turns, one of each at a time, so that a burst of other work
    # on the machine hits both sides alike; 21 each, the median counts.
    : >"$work/full-us.txt"
    : >"$work/full-nginx.txt"
    fetch "$store/metrics.prom" >/dev/null # warm the page cache
    for _ in $(seq 21); do
        fetch "http://127.0.0.1:$us_port/metrics" >>"$work/full-us.txt"
        fetch "$store/metrics.prom" >>"$work/full-nginx.txt"
    done
    full_us=$(median <"$work/full-us.txt" | awk '{ printf "%.1f", $1 * 1000 }')
    full_nginx=$(median <"$work/full-nginx.txt" | awk '{ printf "%.1f", $1 * 1000 }')
    gzip_us=$(curl -s -o /dev/null -H 'Accept-Encoding: gzip' -w '%{time_total} %{size_download}' \
        "http://127.0.0.1:$us_port/metrics" | awk '{ printf "%.1f ms, %.1f MB", $1 * 1000, $2 / 1e6 }')
    stop "$big_pid"

    log "us ($profile): $cycles cycles of $big_targets targets every 10s with a scrape a second"
    write_config "$work/us/big10.toml" "$big_targets" 10s "$us_port" "$profile"
    "$exporter_bin" --config.file="$work/us/big10.toml" --log.level=error >"$work/big10.log" 2>&1 &
    big_pid=$!
    pids+=("$big_pid")
    wait_http "http://127.0.0.1:$us_port/-/healthy"
    done_cycles=0
    while [ "${done_cycles:-0}" -lt "$cycles" ]; do
        sleep 1
        # A failed scrape (say, a write error) is retried a second later.
        curl -s -o "$work/big10.prom" "http://127.0.0.1:$us_port/metrics" || continue
        done_cycles=$(metric "$work/big10.prom" msfb_poll_cycles_total)
        done_cycles=${done_cycles%.*}
    done
    big_cycle=$(metric "$work/big10.prom" msfb_poll_cycle_duration_seconds | awk '{ printf "%.2f", $1 }')
    rss_100k=$(awk '/^VmHWM:/ { print $2 }' "/proc/$big_pid/status")
    stop "$big_pid"

    local r_full r_p99 mib_100k bpt_100k bpt_10k
    r_full=$(awk -v a="$full_us" -v b="$full_nginx" 'BEGIN { printf "%.2f", a / b }')
    r_p99=$(awk -v a="$load_p99" -v b="$idle_p99" 'BEGIN { printf "%.2f", a / b }')
    mib_100k=$(awk -v k="$rss_100k" 'BEGIN { printf "%.1f", k / 1024 }')
    bpt_100k=$(awk -v k="$rss_100k" -v n="$big_targets" 'BEGIN { printf "%.0f", k * 1024 / n }')
    bpt_10k=$(awk -v k="$rss_10k" -v n="$scrape_targets" 'BEGIN { printf "%.0f", k * 1024 / n }')
    rows+="| $profile: full /metrics at $big_targets targets, uncompressed ($scrape_bytes bytes) | ≤ 4 × nginx, same bytes from a file | $full_us ms vs $full_nginx ms | $r_full | $(verdict "$r_full" 4 "<=") |
| $profile: scrape p99 under full polling load, $scrape_targets targets | ≤ 2 × idle p99 | $load_p99 ms ($load_n scrapes) vs $idle_p99 ms ($idle_n) | $r_p99 | $(verdict "$r_p99" 2 "<=") |
| $profile: peak RSS, $big_targets targets, $cycles cycles (${big_cycle}s each) with scrapes | ≤ 150 MiB | $mib_100k MiB; $bpt_100k B/target at $big_targets, $bpt_10k B/target at $scrape_targets | – | $(verdict "$mib_100k" 150 "<=") |
| $profile: start-up to /-/healthy, $big_targets targets from a users file | ≤ 1 s | $startup s | – | $(verdict "$startup" 1 "<=") |
"
    notes+="$profile: gzip scrape at $big_targets targets: $gzip_us
"
    log "us ($profile): done; rows so far:
$rows"
}

# --- 6. bill: what Prometheus pays, per profile ------------------------------------
# A fresh Prometheus (empty TSDB) scrapes an exporter whose targets have all
# been checked; after BENCH_PROM_SCRAPES scrapes its own /metrics gives the
# head series and its resident memory, and its API the duration of each
# scrape of the exporter (the first, which creates every series, is left
# out of the median).
prom_api() { # prom_api QUERY -> the JSON answer of an instant query
    curl -s --data-urlencode "query=$1" "http://127.0.0.1:$prom_port/api/v1/query"
}
bill() { # bill PROFILE -> "head_series rss_bytes median_scrape_s first_scrape_s scrapes up_min"
    local profile=$1 big_pid prom_pid dir=$work/prom-$1 n=0
    write_config "$work/us/bill.toml" "$big_targets" 5m "$us_port" "$profile"
    "$exporter_bin" --config.file="$work/us/bill.toml" --log.level=error >"$work/bill.log" 2>&1 &
    big_pid=$!
    pids+=("$big_pid")
    wait_http "http://127.0.0.1:$us_port/-/healthy"
    until curl -sf -o /dev/null "http://127.0.0.1:$us_port/-/ready"; do sleep 0.2; done
    mkdir -p "$dir"
    cat >"$dir/prometheus.yml" <<PROM
global:
  scrape_interval: 15s
  scrape_timeout: 15s
scrape_configs:
  - job_name: msfb_seat_exporter
    static_configs:
      - targets: ['127.0.0.1:$us_port']
PROM
    log "bill ($profile): prometheus scraping $big_targets targets every 15s, $prom_scrapes scrapes"
    prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$dir/prometheus.log" 2>&1 &
    prom_pid=$!
    pids+=("$prom_pid")
    wait_http "http://127.0.0.1:$prom_port/-/ready"
    until [ "$n" -ge "$prom_scrapes" ]; do
        sleep 5
        kill -0 "$prom_pid" 2>/dev/null || { log "prometheus died: $(cat "$dir/prometheus.log")"; exit 1; }
        n=$(prom_api 'count_over_time(up{job="msfb_seat_exporter"}[1h])' |
            python3 -c '
import json, sys
try:  # not ready yet: no JSON, or no result
    print(json.load(sys.stdin)["data"]["result"][0]["value"][1])
except Exception:
    print(0)')
    done
    curl -s -o "$dir/self.prom" "http://127.0.0.1:$prom_port/metrics"
    local series rss
    series=$(metric "$dir/self.prom" prometheus_tsdb_head_series)
    rss=$(metric "$dir/self.prom" process_resident_memory_bytes)
    prom_api 'scrape_duration_seconds{job="msfb_seat_exporter"}[1h]' >"$dir/durations.json"
    prom_api 'min_over_time(up{job="msfb_seat_exporter"}[1h])' >"$dir/up.json"
    stop "$prom_pid"
    stop "$big_pid"
    python3 - "$dir/durations.json" "$dir/up.json" "$series" "$rss" <<'PY'
import json, sys
values = [float(v) for _, v in json.load(open(sys.argv[1]))["data"]["result"][0]["values"]]
rest = sorted(values[1:])
up = json.load(open(sys.argv[2]))["data"]["result"][0]["value"][1]
print(f"{float(sys.argv[3]):.0f} {float(sys.argv[4]):.0f} {rest[len(rest) // 2]:.3f} {values[0]:.3f} {len(values)} {up}")
PY
}

# --- 7. persistence at 100k targets (issue 12) -------------------------------------------
# One run with --persistence.file and a cycle every 20 s (time for a 100k
# cycle with scrapes running, and quiet time after its save; debug log, JSON:
# each save logs its wall time, fsyncs included, and the CPU time of the
# thread that saved):
#  - a save's CPU against one cycle's: the process's CPU from the end of the
#    first save to the end of the second (the second cycle, whose log is a
#    few lines where the first logs every target; the process is idle
#    between a save and the next cycle), less the second save's CPU;
#  - scrape p99 while saves run: scrapes back to back until BENCH_CYCLES more
#    saves were logged; of the scrapes during which no check was made (no
#    poller work either side), those overlapping a save against the others;
#  - the file's size per target; peak RSS over this run and the restart;
#  - then a restart from that file against a Store that answers nothing (a
#    port nobody listens on): the time from starting the process to a
#    /metrics holding every target's saved value.
cat >"$work/saves.py" <<'EOF'
"""Scrapes URL back to back on one keep-alive connection until LOG holds
WANT more "seat state saved" lines than at the start, or for at most
SECONDS. Each save line gives its end (timestamp) and wall time (duration),
so its window, and its CPU (cpu). Each body carries the poller's get_seat request counter,
copied as the scrape starts: a scrape is "quiet" when the counter did not move from its
copy to the next scrape's (no check while it ran; a save follows a cycle's last check at
once, so asking more would leave no scrape beside a save at 100k targets). Quiet scrapes
overlapping a save window are "with save", the other quiet ones "without".
Prints: with_p99_ms without_p99_ms with_n without_n saves median_cpu_s
max_cpu_s median_wall_s."""
import calendar, http.client, json, re, sys, time, urllib.parse

url, log, seconds, want = urllib.parse.urlsplit(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
counter = re.compile(rb'^msfb_api_requests_total\{[^}]*operation="get_seat"[^}]*\} (\S+)$', re.M)
units = {"s": 1, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}


def seconds_of(debug):
    """A Duration's Debug form (1.2ms, 850µs, 1.1s) in seconds."""
    n, unit = re.match(r"([0-9.]+)(\D+)$", debug).groups()
    return float(n) * units[unit]


def saves():
    """(start, end, wall, cpu) in seconds of every save logged so far."""
    out = []
    for line in open(log, encoding="utf-8"):
        if '"seat state saved"' not in line:
            continue
        e = json.loads(line)
        wall, cpu = seconds_of(e["duration"]), seconds_of(e["cpu"])
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$", e["timestamp"])
        end = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)
        out.append((end - wall, end, wall, cpu))
    return out


conn = http.client.HTTPConnection(url.hostname, url.port)
first = len(saves())
rows = []
start = time.monotonic()
while time.monotonic() < start + seconds:
    w0, t0 = time.time(), time.perf_counter()
    conn.request("GET", url.path)
    body = conn.getresponse().read()
    t1, w1 = time.perf_counter(), time.time()
    count = sum(float(v) for v in counter.findall(body[-300000:]))
    rows.append((w0, w1, t1 - t0, count))
    if len(rows) % 20 == 0 and len(saves()) >= first + want:
        break
windows = saves()[first:]
with_save, without = [], []
for i in range(len(rows) - 1):
    if rows[i][3] != rows[i + 1][3]:
        continue
    w0, w1, took, _ = rows[i]
    overlaps = any(s < w1 and w0 < e for s, e, _, _ in windows)
    (with_save if overlaps else without).append(took)


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))] * 1000 if xs else float("nan")


cpus = sorted(c for _, _, _, c in windows) or [float("nan")]
walls = sorted(w for _, _, w, _ in windows) or [float("nan")]
print(f"{p99(with_save):.2f} {p99(without):.2f} {len(with_save)} {len(without)} "
      f"{len(windows)} {cpus[len(cpus) // 2]:.6f} {cpus[-1]:.6f} {walls[len(walls) // 2]:.6f}")
EOF
saves_logged() { grep -c '"message":"seat state saved"' "$work/persist.log" || true; }
wait_saves() { # wait_saves PID N: until the log holds N saves; prints the process's CPU ticks then
    until [ "$(saves_logged)" -ge "$2" ]; do
        kill -0 "$1" 2>/dev/null || { log "exporter died: $(tail -5 "$work/persist.log")"; exit 1; }
        sleep 0.05
    done
    cpu_ticks "$1"
}
persist_goals() {
    local pid t0 t1 cpu1 cpu2 save2_cpu cycle_cpu file_bytes restore_s rss_run rss_restart series
    local with_p99 without_p99 with_n without_n n_saves save_cpu save_max save_wall
    write_config "$work/us/persist.toml" "$big_targets" 20s "$us_port"
    rm -f "$work/state"
    log "persist: $big_targets targets, a cycle every 20s with --persistence.file: two cycles and their saves"
    "$exporter_bin" --config.file="$work/us/persist.toml" --persistence.file="$work/state" \
        --log.level=debug --log.format=json >"$work/persist.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_http "http://127.0.0.1:$us_port/-/healthy"
    cpu1=$(wait_saves "$pid" 1)
    cpu2=$(wait_saves "$pid" 2)
    save2_cpu=$(grep '"message":"seat state saved"' "$work/persist.log" | sed -n 2p | python3 -c '
import json, re, sys
n, unit = re.match(r"([0-9.]+)(\D+)$", json.loads(sys.stdin.read())["cpu"]).groups()
print(float(n) * {"s": 1, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}[unit])')
    cycle_cpu=$(awk -v t=$((cpu2 - cpu1)) -v hz="$hz" -v s="$save2_cpu" 'BEGIN { printf "%.3f", t / hz - s }')
    log "persist: scrapes of $big_targets targets back to back until $cycles more saves (at most ${load_seconds}s)"
    read -r with_p99 without_p99 with_n without_n n_saves save_cpu save_max save_wall < <(python3 "$work/saves.py" \
        "http://127.0.0.1:$us_port/metrics" "$work/persist.log" "$load_seconds" "$cycles")
    rss_run=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    stop "$pid"
    file_bytes=$(stat -c %s "$work/state")
    # The restart: nothing answers at the Store's address, so every value on
    # /metrics comes from the file.
    sed -i "s|^base_url = .*|base_url = \"http://127.0.0.1:$prom_port\"|" "$work/us/persist.toml"
    log "persist: restart from the file"
    t0=$(date +%s%N)
    "$exporter_bin" --config.file="$work/us/persist.toml" --persistence.file="$work/state" \
        --log.level=error >"$work/persist2.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    until curl -sf -o "$work/persist.prom" "http://127.0.0.1:$us_port/metrics"; do
        kill -0 "$pid" 2>/dev/null || { log "exporter died: $(cat "$work/persist2.log")"; exit 1; }
        sleep 0.002
    done
    t1=$(date +%s%N)
    series=$(grep -c '^msfb_seat_active{' "$work/persist.prom" || true)
    [ "$series" -eq "$big_targets" ] || { log "restart showed $series of $big_targets seats"; exit 1; }
    restore_s=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.3f", d / 1e9 }')
    sleep 2
    rss_restart=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    stop "$pid"
    local r_save r_p99 bpt rss mib_run mib_restart
    r_save=$(awk -v a="$save_cpu" -v b="$cycle_cpu" 'BEGIN { printf "%.3f", a / b }')
    r_p99=$(awk -v a="$with_p99" -v b="$without_p99" 'BEGIN { printf "%.2f", a / b }')
    bpt=$(awk -v a="$file_bytes" -v n="$big_targets" 'BEGIN { printf "%.1f", a / n }')
    mib_run=$(awk -v k="$rss_run" 'BEGIN { printf "%.1f", k / 1024 }')
    mib_restart=$(awk -v k="$rss_restart" 'BEGIN { printf "%.1f", k / 1024 }')
    rss=$(awk -v a="$mib_run" -v b="$mib_restart" 'BEGIN { printf "%.1f", (a > b) ? a : b }')
    ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
    rows+="| persistence: start-up to a /metrics with all $big_targets saved values | ≤ 1 s | $restore_s s | – | $(verdict "$restore_s" 1 "<=") |
| persistence: one save's CPU (median of $n_saves) against one cycle's CPU, $big_targets targets | ≤ 0.1 × cycle | $(ms "$save_cpu") ms (max $(ms "$save_max"); wall with fsyncs $(ms "$save_wall") ms) vs $cycle_cpu s | $r_save | $(verdict "$r_save" 0.1 "<=") |
| persistence: scrape p99 at $big_targets targets while a save runs, against no save (no check running in either) | ≤ 1.25 × without | $with_p99 ms ($with_n scrapes) vs $without_p99 ms ($without_n) | $r_p99 | $(verdict "$r_p99" 1.25 "<=") |
| persistence: state file size | ≤ 100 B/target | $file_bytes bytes, $bpt B/target | – | $(verdict "$bpt" 100 "<=") |
| persistence: peak RSS, $big_targets targets, cycles with saves and scrapes, then the restart | ≤ 150 MiB | $rss MiB ($mib_run running, $mib_restart restarted) | – | $(verdict "$rss" 150 "<=") |
"
}

# --- the table -------------------------------------------------------------------------
verdict() { awk -v v="$1" -v goal="$2" -v op="$3" 'BEGIN {
    ok = (op == "<=") ? (v <= goal) : (v >= goal)
    print ok ? "met" : "MISSED"
}'; }
part() { [[ " $parts " == *" $1 "* ]]; }
fetch() { curl -s -o /dev/null -w '%{time_total}\n' "$1"; }
rows=""
notes=""
header=""
if part poll; then
    poll_part
    r_checks=$(awk -v a="$us_rps" -v b="$limit_rps" 'BEGIN { printf "%.2f", a / b }')
    r_cpu=$(awk -v a="$us_cpu" -v b="$peer_cpu" 'BEGIN { printf "%.3f", a / b }')
    us_us=$(awk -v c="$us_cpu" 'BEGIN { printf "%.1f", c * 1e6 }')
    peer_us=$(awk -v c="$peer_cpu" 'BEGIN { printf "%.1f", c * 1e6 }')
    header="limit: wrk -t2 -c$concurrency at nginx: $limit_rps requests/s
peer:  blackbox_exporter via wrk -c$concurrency: $peer_rps probes/s, $peer_us µs CPU per probe
us:    --once over $poll_targets targets (median of 5): $us_rps checks/s, $us_us µs CPU per check, max RSS $us_rss MiB
"
    rows+="| checks/s, max_concurrency = $concurrency, no rate limit, $poll_targets targets | ≥ 0.5 × wrk | $us_rps vs $limit_rps req/s | $r_checks | $(verdict "$r_checks" 0.5 ">=") |
| CPU seconds per check | ≤ 0.1 × blackbox_exporter | $us_us µs vs $peer_us µs | $r_cpu | $(verdict "$r_cpu" 0.1 "<=") |
"
fi
if part scrape; then
    for profile in $profiles; do
        scrape_goals "$profile"
    done
fi
if part persist; then
    persist_goals
fi
if part bill; then
    bill full >"$work/bill-full.txt"
    bill compact >"$work/bill-compact.txt"
    read -r full_series full_rss full_scrape full_first full_n full_up <"$work/bill-full.txt"
    read -r compact_series compact_rss compact_scrape compact_first compact_n compact_up <"$work/bill-compact.txt"
    r_series=$(awk -v a="$compact_series" -v b="$full_series" 'BEGIN { printf "%.3f", a / b }')
    r_rss=$(awk -v a="$compact_rss" -v b="$full_rss" 'BEGIN { printf "%.3f", a / b }')
    r_scrape=$(awk -v a="$compact_scrape" -v b="$full_scrape" 'BEGIN { printf "%.3f", a / b }')
    mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }
    rows+="| Prometheus head series, $big_targets targets | compact ≤ 0.35 × full | $compact_series vs $full_series | $r_series | $(verdict "$r_series" 0.35 "<=") |
| Prometheus resident memory after $prom_scrapes scrapes at 15 s | compact ≤ 0.35 × full | $(mb "$compact_rss") vs $(mb "$full_rss") | $r_rss | $(verdict "$r_rss" 0.35 "<=") |
| Prometheus scrape_duration_seconds, gzip, median of scrapes 2–$prom_scrapes | compact ≤ 0.4 × full | ${compact_scrape} s vs ${full_scrape} s | $r_scrape | $(verdict "$r_scrape" 0.4 "<=") |
"
    notes+="Prometheus $(prometheus --version 2>&1 | awk 'NR == 1 { print $3 }'): first scrape (creates every series) ${full_first} s full, ${compact_first} s compact; every scrape up: full $full_up, compact $compact_up ($full_n and $compact_n scrapes)
"
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)

cat <<EOF

Machine: $(nproc) cores ($cpu_model), $mem_total, $(uname -sr); load average before $load_before, after $load_after
$header
| What | Goal | Measured | Ratio | Verdict |
|---|---|---|---|---|
$rows
$notes
EOF
