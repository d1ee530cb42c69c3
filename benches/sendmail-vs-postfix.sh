#!/usr/bin/env bash
# benches/sendmail-vs-postfix.sh - the sendmail command of tidemail and of Postfix, side by
# side in one run, on the same machine, the same file system, the same durability (exit 0
# only once the message is on disk).
#
#   sudo benches/sendmail-vs-postfix.sh                 # 2 rounds, N=500
#   sudo benches/sendmail-vs-postfix.sh --runs 3 --n 1000 --no-build
#   sudo benches/sendmail-vs-postfix.sh --no-daemon     # tidemail without its daemon only
#
# Measures, for every system, interleaved round by round (postfix, tidemail, tidemail+daemon):
#   latency  one `sendmail -i -f a@sender.example b@remote.example < 1 KiB message`,
#            hyperfine (3 warm-ups, 40 runs): median, mean, min, max
#   burst    N invocations by C concurrent submitters (C = 1 and 10; each submitter a bash
#            loop of N/C calls), time until every call returned and until the queue holds
#            all N; messages/s = N / time until queued
#   drain    the daemon side alone (not for tidemail without daemon; --no-drain skips it):
#            N messages put into maildrop while the daemons are stopped, then the daemons
#            started; time until all N are in the deferred queue: pickup, cleanup, queue
#            manager (held by defer_transports = smtp)
# Systems:
#   postfix           Debian's Postfix, a private instance (../shared/bench/postfix-instance.sh),
#                     started: sendmail -> postdrop writes maildrop (fsync), pickup/cleanup
#                     move it to incoming (fsync again), qmgr defers it (defer_transports=smtp)
#   tidemail          target/release/tidemail through a symlink named sendmail, -C CONFIG,
#                     no daemon: the message stays in maildrop (fdatasync + rename + dir fsync)
#   tidemail+daemon   the same with `tidemail -c CONFIG daemon` running (pickup, cleanup and
#                     queue manager move it on, as Postfix's daemons do)
# Queue count: Postfix: files in maildrop/incoming/active/deferred/hold of the instance
# (postfix-instance.sh count); tidemail: files in the same directories of its queue whose
# names do not start with ".tmp.".
#
# Needs root (private Postfix instance; tidemail's daemon switches to mail_owner=nobody).
# Installs hyperfine, postfix (no configuration: the system-wide instance is not used) and
# iproute2 when missing. Everything lives in one temp dir, removed on exit; every process
# started here is stopped by its pid on exit (also on Ctrl-C).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
KIT=${BENCH_KIT:-$REPO/../shared/bench}
RUNS=2
N=500
CONCS="1 10"
BUILD=1
DAEMON_MODES="nodaemon daemon"
DRAIN=1
HF_WARMUP=3
HF_RUNS=40

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --n) N=$2; shift 2 ;;
        --conc) CONCS=$(echo "$2" | tr , ' '); shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-daemon) DAEMON_MODES="nodaemon"; shift ;;
        --daemon-only) DAEMON_MODES="daemon"; shift ;;
        --no-drain) DRAIN=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 ;;
    esac
done

die() { echo "sendmail-vs-postfix: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (a private Postfix instance needs it)"
[ -x "$KIT/postfix-instance.sh" ] || die "benchmark kit not found (set BENCH_KIT=/path/to/shared/bench)"

# ---- tools -----------------------------------------------------------------------------
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
[ -x /usr/sbin/postfix ] || need+=(postfix)
command -v ss >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    note "installing ${need[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$BUILD" = 1 ]; then
    note "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
fi
TM="$REPO/target/release/tidemail"
[ -x "$TM" ] || die "no $TM (build it: cargo build --release)"

# ---- scratch space and clean-up --------------------------------------------------------
# The queues must be on a real disk: on tmpfs fsync costs nothing.
base=${TMPDIR:-/tmp}
if [ "$(stat -f -c %T "$base")" = tmpfs ]; then
    base="$REPO/target"
    note "$TMPDIR is tmpfs; using $base"
fi
T=$(mktemp -d "$base/sendmail-vs-postfix.XXXXXX")
chmod 755 "$T"          # the daemons run as postfix / nobody and must reach their queues
PF="$T/postfix"
TD="$T/tidemail"
TM_PID=""
PF_STARTED=0
SUB_PIDS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${SUB_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    stop_tidemail || true
    if [ "$PF_STARTED" = 1 ]; then "$KIT/postfix-instance.sh" stop "$PF" || true; fi
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the message -----------------------------------------------------------------------
MSG="$T/msg-1k.eml"
body=$'From: a@sender.example\nTo: b@remote.example\nSubject: sendmail benchmark\n'
body+=$'Message-ID: <sendmail-bench@sender.example>\nDate: Thu, 1 Jan 2026 00:00:00 +0000\n\n'
while [ ${#body} -lt 1024 ]; do body+=$'The quick brown fox jumps over the lazy dog, again and again and again.\n'; done
printf '%s\n' "${body:0:1023}" > "$MSG"
[ "$(stat -c %s "$MSG")" = 1024 ] || die "message is not 1024 bytes"

# ---- Postfix ---------------------------------------------------------------------------
# free_port [EXCEPT]: a port in 20700-20899 nobody listens on (and not EXCEPT)
free_port() {
    local p
    for p in $(shuf -i 20700-20899 -n 60); do
        [ "$p" != "${1:-}" ] || continue
        [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
    done
    die "no free port in 20700-20899"
}
PF_PORT=$(free_port)
PF_RELAY=$(free_port "$PF_PORT")
note "Postfix instance in $PF (smtpd 127.0.0.1:$PF_PORT, held mail, relayhost [127.0.0.1]:$PF_RELAY)"
"$KIT/postfix-instance.sh" init "$PF" --smtp-port "$PF_PORT" --relay-port "$PF_RELAY" --defer
PF_STARTED=1
"$KIT/postfix-instance.sh" start "$PF"
PF_SENDMAIL="/usr/sbin/sendmail -C $PF/etc"

# ---- tidemail --------------------------------------------------------------------------
mkdir -p "$TD/bin" "$TD/log"
chmod 755 "$TD"
ln -s "$TM" "$TD/bin/sendmail"
TCONF="$TD/tidemail.toml"
owner=$(id -un)
[ "$(id -u)" = 0 ] && owner=nobody
cat > "$TCONF" <<EOF
# generated by benches/sendmail-vs-postfix.sh: the same settings as the Postfix instance
queue_directory = "$TD/queue"
data_directory = "$TD/data"
mail_spool_directory = "$TD/mail"
mail_owner = "$owner"
myhostname = "bench-tidemail.localdomain"
mydomain = "localdomain"
mydestination = ["\$myhostname", "localhost.\$mydomain", "localhost"]
inet_interfaces = ["127.0.0.1"]
inet_protocols = ["ipv4"]
mynetworks = ["127.0.0.0/8"]
relayhost = "[127.0.0.1]:$PF_RELAY"
disable_dns_lookups = true
defer_transports = ["smtp"]
alias_maps = []
alias_database = []
maillog_file = "$TD/log/maillog"
EOF
"$TM" -c "$TCONF" config check >/dev/null || die "tidemail rejects $TCONF"
TM_SENDMAIL="$TD/bin/sendmail -C $TCONF"
TQ="$TD/queue"

start_tidemail() {
    "$TM" -c "$TCONF" daemon >"$TD/log/daemon.out" 2>&1 &
    TM_PID=$!
    local _
    for _ in $(seq 1 200); do
        [ -S "$TQ/public/control" ] && return 0
        kill -0 "$TM_PID" 2>/dev/null || { cat "$TD/log/daemon.out" >&2; die "tidemail daemon exited"; }
        sleep 0.05
    done
    die "tidemail daemon: no control socket after 10 s"
}

stop_tidemail() {
    [ -n "$TM_PID" ] || return 0
    kill -TERM "$TM_PID" 2>/dev/null || true
    local _
    for _ in $(seq 1 100); do kill -0 "$TM_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$TM_PID" 2>/dev/null || true
    wait "$TM_PID" 2>/dev/null || true
    TM_PID=""
}

# ---- per-system operations ------------------------------------------------------------
tm_count() {
    local d n=0 c
    for d in maildrop incoming active deferred hold; do
        [ -d "$TQ/$d" ] || continue
        c=$(find "$TQ/$d" -maxdepth 1 -type f ! -name '.tmp.*' 2>/dev/null | wc -l) || true
        n=$((n + c))
    done
    echo "$n"
}

# count SYSTEM
count() {
    case "$1" in
        postfix) "$KIT/postfix-instance.sh" count "$PF" ;;
        *) tm_count ;;
    esac
}

# purge SYSTEM: empty the queue and wait until the count stays 0.
# tidemail has no purge command yet: its daemon is stopped, the files removed, and the
# daemon started again when the mode needs it.
purge() {
    local sys=$1 _
    case "$sys" in
        postfix) "$KIT/postfix-instance.sh" purge "$PF" ;;
        *)
            stop_tidemail
            find "$TQ" -mindepth 2 -maxdepth 2 -type f \
                \( -path '*/maildrop/*' -o -path '*/incoming/*' -o -path '*/active/*' -o -path '*/deferred/*' \
                -o -path '*/hold/*' -o -path '*/corrupt/*' \) -delete 2>/dev/null || true
            [ "$sys" = tidemail+daemon ] && start_tidemail
            ;;
    esac
    for _ in $(seq 1 300); do
        [ "$(count "$sys")" = 0 ] && { sync -f "$T" 2>/dev/null || sync; return 0; }
        sleep 0.1
    done
    die "$sys: queue not empty after purge ($(count "$sys"))"
}

sendmail_of() {
    case "$1" in
        postfix) echo "$PF_SENDMAIL" ;;
        *) echo "$TM_SENDMAIL" ;;
    esac
}

now_ns() { date +%s%N; }

# wait_count SYSTEM N TIMEOUT_S -> prints the count reached
wait_count() {
    local sys=$1 want=$2 deadline=$(( $(date +%s) + $3 )) c
    while :; do
        c=$(count "$sys")
        [ "$c" = "$want" ] && break
        [ "$(date +%s)" -ge "$deadline" ] && break
        sleep 0.02
    done
    echo "$c"
}

RAW="$T/raw.tsv"     # system, case, run, metric, value
: > "$RAW"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RAW"; }

latency() {
    local sys=$1 run=$2 js="$T/hf.json" cmd
    purge "$sys"
    cmd="$(sendmail_of "$sys") -i -f a@sender.example b@remote.example < $MSG"
    hyperfine --style none --warmup "$HF_WARMUP" --runs "$HF_RUNS" --export-json "$js" \
        --command-name "$sys" "$cmd" >/dev/null 2>"$T/hf.err" || { cat "$T/hf.err" >&2; die "$sys: hyperfine failed"; }
    python3 - "$js" "$sys" "$run" >> "$RAW" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
for k in ("median", "mean", "min", "max", "stddev"):
    print("%s\tlatency\t%s\t%s_ms\t%.3f" % (sys.argv[2], sys.argv[3], k, (r[k] or 0) * 1000))
EOF
    local want=$((HF_WARMUP + HF_RUNS)) got
    got=$(wait_count "$sys" "$want" 30)
    [ "$got" = "$want" ] || note "$sys latency run $run: queue holds $got, expected $want"
    rec "$sys" latency "$run" queued "$got"
}

burst() {
    local sys=$1 conc=$2 run=$3 per=$(( N / $2 )) t0 t1 t2 got w rc=0 sm
    purge "$sys"
    sm=$(sendmail_of "$sys")
    SUB_PIDS=()
    t0=$(now_ns)
    for ((w = 0; w < conc; w++)); do
        # shellcheck disable=SC2086 # $sm is a command line with options
        bash -c 'per=$1; msg=$2; shift 2; for ((i = 0; i < per; i++)); do "$@" < "$msg" || exit 1; done' \
            _ "$per" "$MSG" $sm -i -f a@sender.example b@remote.example &
        SUB_PIDS+=($!)
    done
    for w in "${SUB_PIDS[@]}"; do wait "$w" || rc=1; done
    SUB_PIDS=()
    t1=$(now_ns)
    got=$(wait_count "$sys" $((per * conc)) 60)
    t2=$(now_ns)
    [ "$rc" = 0 ] || note "$sys burst c$conc run $run: a sendmail call failed"
    [ "$got" = $((per * conc)) ] || note "$sys burst c$conc run $run: queue holds $got, expected $((per * conc))"
    local case="burst-c$conc"
    rec "$sys" "$case" "$run" secs_returned "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')"
    rec "$sys" "$case" "$run" secs_queued "$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.3f", (b-a)/1e9}')"
    rec "$sys" "$case" "$run" msgs_per_s "$(awk -v a="$t0" -v b="$t2" -v n="$got" 'BEGIN{printf "%.1f", n/((b-a)/1e9)}')"
    rec "$sys" "$case" "$run" queued "$got"
    rec "$sys" "$case" "$run" ok "$([ "$rc" = 0 ] && [ "$got" = $((per * conc)) ] && echo 1 || echo 0)"
}

# drain SYSTEM RUN: the daemon side alone. With the daemons stopped, N messages are put into
# maildrop by 10 concurrent sendmail submitters (untimed); then the daemons are started and
# the clock runs from the moment the start command returned (Postfix: smtpd port listening,
# about 0.3-0.5 s of `postfix start`, during which pickup may already work; tidemail: control
# socket up) until all N are in the deferred queue (held by defer_transports = smtp) and
# maildrop is empty: pickup + cleanup + queue manager, N messages.
deferred_count() {
    case "$1" in
        postfix) find "$PF/spool/deferred" -type f 2>/dev/null | wc -l ;;
        *) find "$TQ/deferred" -maxdepth 1 -type f ! -name '.tmp.*' 2>/dev/null | wc -l ;;
    esac
}
maildrop_count() {
    case "$1" in
        postfix) find "$PF/spool/maildrop" -type f 2>/dev/null | wc -l ;;
        *) find "$TQ/maildrop" -maxdepth 1 -type f ! -name '.tmp.*' 2>/dev/null | wc -l ;;
    esac
}
drain() {
    local sys=$1 run=$2 per=$(( N / 10 )) w t0 t1 got deadline sm
    purge "$sys"
    case "$sys" in postfix) "$KIT/postfix-instance.sh" stop "$PF" ;; *) stop_tidemail ;; esac
    sm=$(sendmail_of "$sys")
    SUB_PIDS=()
    for ((w = 0; w < 10; w++)); do
        # shellcheck disable=SC2086 # $sm is a command line with options
        bash -c 'per=$1; msg=$2; shift 2; for ((i = 0; i < per; i++)); do "$@" < "$msg" 2>/dev/null || exit 1; done' \
            _ "$per" "$MSG" $sm -i -f a@sender.example b@remote.example &
        SUB_PIDS+=($!)
    done
    for w in "${SUB_PIDS[@]}"; do wait "$w" || die "$sys drain: a sendmail call failed"; done
    SUB_PIDS=()
    [ "$(maildrop_count "$sys")" = $((per * 10)) ] || die "$sys drain: maildrop holds $(maildrop_count "$sys")"
    case "$sys" in postfix) "$KIT/postfix-instance.sh" start "$PF" ;; *) start_tidemail ;; esac
    t0=$(now_ns)
    deadline=$(( $(date +%s) + 120 ))
    while :; do
        got=$(deferred_count "$sys")
        [ "$got" = $((per * 10)) ] && [ "$(maildrop_count "$sys")" = 0 ] && break
        [ "$(date +%s)" -ge "$deadline" ] && { note "$sys drain run $run: only $got deferred after 120 s"; break; }
        sleep 0.02
    done
    t1=$(now_ns)
    rec "$sys" drain "$run" secs_drained "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')"
    rec "$sys" drain "$run" msgs_per_s "$(awk -v a="$t0" -v b="$t1" -v n="$got" 'BEGIN{printf "%.1f", n/((b-a)/1e9)}')"
    rec "$sys" drain "$run" ok "$([ "$got" = $((per * 10)) ] && echo 1 || echo 0)"
}

SYSTEMS=(postfix)
for m in $DAEMON_MODES; do
    case "$m" in nodaemon) SYSTEMS+=(tidemail) ;; daemon) SYSTEMS+=(tidemail+daemon) ;; esac
done

# ---- environment -----------------------------------------------------------------------
{
    echo "date:       $(date)"
    echo "machine:    $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB"
    echo "kernel:     $(uname -r)"
    echo "queue fs:   $(findmnt -no FSTYPE,SOURCE -T "$T" | tr -s ' ') ($(findmnt -no OPTIONS -T "$T"))"
    echo "postfix:    $(/usr/sbin/postconf -h -d mail_version)"
    echo "tidemail:   $("$TM" --version | head -1)"
    echo "hyperfine:  $(hyperfine --version)"
    echo "parameters: runs=$RUNS n=$N conc=$CONCS hyperfine warmup=$HF_WARMUP runs=$HF_RUNS systems=${SYSTEMS[*]}"
    echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
} | sed 's/^/# /'

# ---- runs, interleaved -----------------------------------------------------------------
for ((run = 1; run <= RUNS; run++)); do
    for sys in "${SYSTEMS[@]}"; do
        note "run $run/$RUNS: $sys latency"
        latency "$sys" "$run"
    done
    for conc in $CONCS; do
        for sys in "${SYSTEMS[@]}"; do
            note "run $run/$RUNS: $sys burst of $N, $conc concurrent"
            burst "$sys" "$conc" "$run"
        done
    done
    if [ "$DRAIN" = 1 ]; then
        for sys in "${SYSTEMS[@]}"; do
            [ "$sys" = tidemail ] && continue        # needs a daemon
            note "run $run/$RUNS: $sys drain of $N from maildrop"
            drain "$sys" "$run"
        done
    fi
    rec all load "$run" load1 "$(cut -d' ' -f1 /proc/loadavg)"
done
stop_tidemail

# ---- report ----------------------------------------------------------------------------
python3 - "$RAW" "${SYSTEMS[@]}" <<'EOF'
import sys, statistics
from collections import defaultdict
raw, systems = sys.argv[1], sys.argv[2:]
v = defaultdict(list)
for line in open(raw):
    s, case, run, metric, val = line.rstrip("\n").split("\t")
    v[(s, case, metric)].append(float(val))

def cell(s, case, metric, fmt):
    xs = v.get((s, case, metric))
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) == 1:
        return fmt % med
    return (fmt + " [" + fmt + " - " + fmt + "]") % (med, min(xs), max(xs))

def ratio(s, case, metric, higher_better):
    a, b = v.get(("postfix", case, metric)), v.get((s, case, metric))
    if not a or not b:
        return "-"
    r = statistics.median(b) / statistics.median(a) if higher_better else statistics.median(a) / statistics.median(b)
    return "%.2fx" % r

others = [s for s in systems if s != "postfix"]
head = "| case | metric | " + " | ".join(systems) + " | " + " | ".join("%s vs postfix" % s for s in others) + " |"
print()
print("median [min - max] over %d runs; \"vs postfix\" = how many times faster (ratio of medians)" % len(v[("all", "load", "load1")]))
print()
print(head)
print("|" + "---|" * (2 + len(systems) + len(others)))
rows = [("latency", "median_ms", "%.2f ms", False), ("latency", "mean_ms", "%.2f ms", False),
        ("latency", "min_ms", "%.2f ms", False), ("latency", "max_ms", "%.2f ms", False)]
cases = sorted({c for (_, c, _) in v if c.startswith("burst-c")}, key=lambda c: int(c[7:]))
for c in cases:
    rows += [(c, "msgs_per_s", "%.0f", True), (c, "secs_queued", "%.2f s", False), (c, "secs_returned", "%.2f s", False)]
if any(c == "drain" for (_, c, _) in v):
    rows += [("drain", "drain_msgs_per_s", "%.0f", True), ("drain", "secs_drained", "%.2f s", False)]
for case, metric, fmt, hb in rows:
    metric_key = "msgs_per_s" if metric == "drain_msgs_per_s" else metric
    label = {"drain_msgs_per_s": "msgs/s, maildrop -> deferred", "secs_drained": "until all N deferred", "median_ms": "one call, hyperfine median", "mean_ms": "one call, mean", "min_ms": "one call, min",
             "max_ms": "one call, max", "msgs_per_s": "msgs/s (until queued)", "secs_queued": "until all queued",
             "secs_returned": "until last call returned"}[metric]
    print("| %s | %s | %s | %s |" % (case, label, " | ".join(cell(s, case, metric_key, fmt) for s in systems),
                                      " | ".join(ratio(s, case, metric_key, hb) for s in others)))
bad = [(s, c) for (s, c, m), xs in v.items() if m == "ok" and min(xs) < 1]
print()
print("load1 at the end of each run: %s" % ", ".join("%.2f" % x for x in v[("all", "load", "load1")]))
queued = {(s, c): xs for (s, c, m), xs in v.items() if m == "queued"}
print("queue count reached: %s" % "; ".join("%s %s %s" % (s, c, "/".join("%d" % x for x in xs)) for (s, c), xs in sorted(queued.items())))
if bad:
    print("FAILED (a call failed or the queue did not reach N): %s" % bad)
EOF
