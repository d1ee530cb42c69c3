#!/usr/bin/env bash
# benches/flush-vs-postfix.sh - tidemail's flush against Postfix's, side by side in one
# interleaved run, on the same machine, with the shared benchmark kit's helpers
# (../shared/bench: postfix-instance.sh, linkemu.py, pysink.py; smtp-sink from Postfix).
#
#   sudo benches/flush-vs-postfix.sh                          # 3 loopback runs, 2 per link profile
#   sudo benches/flush-vs-postfix.sh --runs 5 --link-runs 3 --no-build
#   sudo benches/flush-vs-postfix.sh --workloads link --profiles satellite
#   sudo benches/flush-vs-postfix.sh --tm-set 'initial_destination_concurrency=20' --label idc20
#
# Why not the kit's workloads c and d: they inject with smtp-source/SMTP, and tidemail has no
# SMTP server yet (issue 6). Here both systems get their mail through their own sendmail
# command (Postfix: /usr/sbin/sendmail -C DIR/etc; tidemail: its binary invoked as sendmail
# -C CONFIG), 10 submitters in parallel; the time to queue is not measured. Everything else
# follows the kit's c and d.
#
# Workloads (interleaved run by run: postfix, tidemail, postfix, tidemail, ...):
#   loopback  N (2000) messages of 2 KiB with unique Message-IDs queued and held
#             (defer_transports = smtp) in each system, the queue settles 0.5 s, then
#             `smtp-sink -c` listens as the smarthost, then the flush. secs = from the flush
#             command until the sink has counted N and the queue is empty (secs_sink: the
#             sink alone). msgs/s = N / secs.
#   link      50 x 3 KiB + 5 x 50 KiB held, then the flush to the smarthost through
#             linkemu.py (shared link) in front of pysink.py --chunking (as the kit's d).
#             Profiles: dialup 56 kbit/s each way, 150 ms one-way; satellite 1 Mbit/s,
#             300 ms one-way. secs = until every Message-ID is at the sink and the queue is
#             empty. limit = max(bytes_up, bytes_down) * 8 / bw + 4 * RTT (the kit's limit_s,
#             bytes from the emulator's stats), ratio = secs / limit.
# The flush:
#   postfix   `postqueue -c DIR/etc -f` (returns at once; the kit's postfix adapter), with
#             `defer_transports = smtp` set at init (postfix-instance.sh init --defer)
#   tidemail  `tidemail -c CONF flush --wait --timeout T` started in the background with the
#             daemon running; its exit, exit code and summary are recorded, but the clock
#             stops for both systems only when the sink has everything and the queue count is 0
#             (files under maildrop, incoming, active, deferred, hold; tidemail's `.tmp.*`
#             excluded), polled every 20 ms by the same Python harness. A flush client that
#             exits non-zero does not stop the wait (tidemail's flush --wait is cut after
#             10 s by the daemon while the flush goes on); the run gives up when nothing
#             moved at the sink or in the queue for 90 s, or at the timeout (300 s loopback,
#             400 s link), and is then recorded with "ok": false.
# Both systems run their daemons for the whole session (Postfix's master tree; `tidemail
# daemon`, which drops to mail_owner = nobody), log every message to a file, and use the
# same settings (postfix-instance.sh's, mirrored in tidemail's TOML like
# benches/tidemail-adapter.sh). CPU = user+system seconds of each system's daemon process
# tree during the flush (children counted once reaped), read 0.5 s after the end.
#
# Options:
#   --runs R          loopback runs per system (default 3)
#   --link-runs R     runs per link profile per system (default 2)
#   --n N             loopback messages (default 2000)
#   --workloads LIST  loopback,link (default both)
#   --profiles LIST   dialup,satellite (default both)
#   --tm-set 'k=v;..' extra tidemail settings (TOML values, e.g. 'initial_destination_concurrency=20')
#   --pf-set 'k=v;..' extra Postfix settings (postconf -e)
#   --label NAME      added to the system names in the report when a knob is changed
#   --no-build        do not run cargo build --release
#   --out DIR         raw records, reports and logs (default target/flush-vs-postfix-STAMP)
#
# Needs root (a private Postfix instance). Installs postfix (no configuration: the
# system-wide instance is not used), python3 and iproute2 when missing. Ports: 20000-20999 on
# 127.0.0.1 (free ones picked at random). Scratch in one temp dir, removed on exit; every
# process started here (Postfix instance, tidemail daemon, sinks, emulators, submitters) is
# stopped by its pid on exit, also on Ctrl-C. Every wait is bounded.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
KIT=${BENCH_KIT:-$REPO/../shared/bench}
RUNS=3
LINK_RUNS=2
N=2000
WORKLOADS="loopback link"
PROFILES="dialup satellite"
TM_SET=""
PF_SET=""
LABEL=""
BUILD=1
OUT=""
ARGS="$*"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --link-runs) LINK_RUNS=$2; shift 2 ;;
        --n) N=$2; shift 2 ;;
        --workloads) WORKLOADS=$(echo "$2" | tr , ' '); shift 2 ;;
        --profiles) PROFILES=$(echo "$2" | tr , ' '); shift 2 ;;
        --tm-set) TM_SET=$2; shift 2 ;;
        --pf-set) PF_SET=$2; shift 2 ;;
        --label) LABEL=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 ;;
    esac
done

die() { echo "flush-vs-postfix: $*" >&2; exit 1; }
note() { echo "# $(date +%H:%M:%S) $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (a private Postfix instance needs it)"
[ -x "$KIT/postfix-instance.sh" ] || die "benchmark kit not found (set BENCH_KIT=/path/to/shared/bench)"

# ---- tools -----------------------------------------------------------------------------
need=()
[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v ss >/dev/null || need+=(iproute2)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    note "installing ${need[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$BUILD" = 1 ]; then
    note "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
fi
TM="$REPO/target/release/tidemail"
[ -x "$TM" ] || die "no $TM (build it: cargo build --release)"

# ---- scratch space, output and clean-up -------------------------------------------------
base=${TMPDIR:-/tmp}
if [ "$(stat -f -c %T "$base")" = tmpfs ]; then base="$REPO/target"; fi
T=$(mktemp -d "$base/flush-vs-postfix.XXXXXX")
chmod 755 "$T"          # the daemons run as postfix / nobody and must reach their queues
[ -n "$OUT" ] || OUT="$REPO/target/flush-vs-postfix-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
# a private copy of the binary: colleagues' builds may replace target/release/tidemail mid-run
cp "$TM" "$T/tidemail.bin"
TM_BUILT=$(stat -c %y "$TM" | cut -d. -f1)
TM="$T/tidemail.bin"
chmod 755 "$TM"
PF="$T/postfix"
TD="$T/tidemail"
TQ="$TD/queue"
TM_PID=""
PF_STARTED=0
HELPERS=()              # pids of sinks/emulators/flush clients started here

stop_pid() {            # stop_pid PID: TERM, wait up to 10 s, then KILL
    local p=$1 _
    kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

stop_tidemail() {
    [ -n "$TM_PID" ] || return 0
    stop_pid "$TM_PID"
    TM_PID=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${HELPERS[@]}"; do stop_pid "$p"; done
    stop_tidemail || true
    if [ "$PF_STARTED" = 1 ]; then "$KIT/postfix-instance.sh" stop "$PF" || true; fi
    # keep the logs for the diagnosis
    mkdir -p "$OUT/logs"
    cp "$PF/log/maillog" "$OUT/logs/postfix.maillog" 2>/dev/null || true
    cp "$TD/log/maillog" "$OUT/logs/tidemail.maillog" 2>/dev/null || true
    cp "$TD/log/daemon.out" "$OUT/logs/tidemail.daemon.out" 2>/dev/null || true
    cp "$T"/emu-*.jsonl "$OUT/logs/" 2>/dev/null || true
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- ports -----------------------------------------------------------------------------
USED_PORTS=" "
free_port() {
    local p
    for p in $(shuf -i 20000-20999 -n 200); do
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
            USED_PORTS="$USED_PORTS$p "
            echo "$p"
            return 0
        fi
    done
    die "no free port in 20000-20999"
}
PF_SMTP=$(free_port); PF_RELAY=$(free_port)
TM_RELAY=$(free_port); SINK_BACK=$(free_port)
declare -A RELAY=([postfix]=$PF_RELAY [tidemail]=$TM_RELAY)

# ---- the harness (Python, standard library only) ----------------------------------------
H="$T/harness.py"
cat > "$H" <<'PYEOF'
import concurrent.futures, email.utils, json, os, random, signal, subprocess, sys, time, zlib

SENDER, RCPT = "a@sender.example", "b@remote.example"
QDIRS = ("maildrop", "incoming", "active", "deferred", "hold")

def count_files(d):
    n = 0
    try:
        for e in os.scandir(d):
            if e.name.startswith(".tmp."):
                continue
            if e.is_dir(follow_symlinks=False):
                n += count_files(e.path)
            elif e.is_file(follow_symlinks=False):
                n += 1
    except OSError:
        pass
    return n

def qcount(q):
    return sum(count_files(os.path.join(q, d)) for d in QDIRS)

def make_message(mid, size, idx, seed):
    rnd = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    hdr = ("From: Bench Sender <%s>\nTo: <%s>\nSubject: bench message %d\nDate: %s\n"
           "Message-ID: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
           % (SENDER, RCPT, idx, email.utils.formatdate(localtime=False), mid))
    body, left = [], max(0, size - len(hdr))
    while left > 0:
        n = min(76, max(left - 1, 1))
        body.append("".join(rnd.choice(alphabet) for _ in range(n)) + "\n")
        left -= n + 1
    return (hdr + "".join(body)).encode("ascii")

def cmd_inject(cmd, tag, mix, conc, mids_out):
    # mix: "2000x2048" or "50x3072,5x51200"
    msgs, i = [], 0
    for part in mix.split(","):
        c, s = (int(x) for x in part.split("x"))
        for _ in range(c):
            mid = "<flush.%s.%d@bench.example>" % (tag, i)
            msgs.append((mid, make_message(mid, s, i, zlib.crc32(tag.encode()) + i)))
            i += 1
    argv = cmd.split() + ["-i", "-f", SENDER, RCPT]
    def one(m):
        r = subprocess.run(argv, input=m[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        return r.returncode, r.stderr.decode(errors="replace")[-300:]
    t0 = time.monotonic()
    fails = []
    with concurrent.futures.ThreadPoolExecutor(int(conc)) as ex:
        for rc, err in ex.map(one, msgs):
            if rc != 0:
                fails.append((rc, err))
    with open(mids_out, "w") as f:
        for mid, _ in msgs:
            f.write(mid + "\n")
    print(json.dumps({"injected": len(msgs) - len(fails), "failed": len(fails),
                      "first_error": fails[0] if fails else None,
                      "payload_bytes": sum(len(m) for _, m in msgs),
                      "secs_inject": round(time.monotonic() - t0, 3)}))

def cmd_wait_held(q, n, timeout):
    n, end = int(n), time.monotonic() + float(timeout)
    while True:
        held, total = count_files(os.path.join(q, "deferred")), qcount(q)
        if (held == n and total == n) or time.monotonic() > end:
            break
        time.sleep(0.05)
    print(json.dumps({"held": held, "queued": total}))

def proc_tree_cpu(roots):
    hz = os.sysconf("SC_CLK_TCK")
    kids, stat = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        kids.setdefault(int(f[1]), []).append(int(p))
        stat[int(p)] = sum(int(x) for x in f[11:15])     # utime stime cutime cstime
    seen, todo = set(), [r for r in roots if r in stat]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
    return sum(stat[p] for p in seen) / hz

def smtp_sink_count(path):
    import re
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 200))
            tail = f.read().decode("ascii", "replace")
    except OSError:
        return 0
    m = re.findall(r"mesg=(\d+)", tail)
    return int(m[-1]) if m else 0

def pysink_mids(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("type") != "summary":
                    out.append((r.get("mid"), r.get("via"), r.get("conn")))
    except OSError:
        pass
    return out

def cmd_flush(args):
    # flush KIND SINKFILE MIDSFILE QUEUE ROOTPIDS TIMEOUT FLUSHOUT -- FLUSH COMMAND...
    kind, sinkfile, midsfile, q, roots, timeout, flushout = args[:7]
    fcmd = args[8:]
    roots = [int(x) for x in roots.split(",") if x]
    want = set(l.strip() for l in open(midsfile) if l.strip())
    n = len(want)
    if kind == "smtp-sink":
        got_all = lambda: smtp_sink_count(sinkfile) >= n
        leaked = smtp_sink_count(sinkfile)
    else:
        got_all = lambda: want <= set(m for m, _, _ in pysink_mids(sinkfile))
        leaked = len(pysink_mids(sinkfile))
    cpu0 = proc_tree_cpu(roots)
    fo = open(flushout, "wb")
    t0 = time.monotonic()
    fp = subprocess.Popen(fcmd, stdout=fo, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    end = t0 + float(timeout)
    t_cmd = rc = None
    def poll_cmd():
        nonlocal t_cmd, rc
        if t_cmd is None and fp.poll() is not None:
            t_cmd, rc = time.monotonic(), fp.returncode
    last = [None, time.monotonic()]     # (sink progress, queue count), when it last changed
    def give_up():
        # The flush client failed (a usage error; tidemail's exit 75: something deferred
        # again, or its connection to the daemon was dropped while the flush goes on): stop
        # waiting once neither the sink nor the queue has moved for 90 s, not at once (on
        # dial-up, five 50 KiB messages sharing the link complete nothing for about 36 s).
        now = time.monotonic()
        if now > end:
            return True
        if rc in (None, 0):
            return False
        state = (smtp_sink_count(sinkfile) if kind == "smtp-sink" else len(pysink_mids(sinkfile)), qcount(q))
        if state != last[0]:
            last[0], last[1] = state, now
        return now > max(last[1], t_cmd) + 90
    ok_sink = False
    while not give_up():
        poll_cmd()
        if got_all():
            ok_sink = True
            break
        time.sleep(0.02)
    t_sink = time.monotonic()
    left = qcount(q)
    while left != 0 and not give_up():
        poll_cmd()
        time.sleep(0.02)
        left = qcount(q)
    t_empty = time.monotonic()
    # the flush client: bounded wait, then stop it (tidemail's flush --wait should be done)
    cend = time.monotonic() + 30
    while fp.poll() is None and time.monotonic() < cend:
        time.sleep(0.02)
    poll_cmd()
    if fp.poll() is None:
        fp.send_signal(signal.SIGTERM)
        try:
            fp.wait(5)
        except subprocess.TimeoutExpired:
            fp.kill(); fp.wait()
    fo.close()
    time.sleep(0.5)
    cpu = proc_tree_cpu(roots) - cpu0
    res = {"n": n, "secs": round(t_empty - t0, 4), "secs_sink": round(t_sink - t0, 4),
           "msgs_per_s": round(n / (t_empty - t0), 1),
           "secs_flush_cmd": round(t_cmd - t0, 4) if t_cmd else None, "flush_rc": rc,
           "cpu_s": round(cpu, 3), "cpu_ms_per_msg": round(cpu * 1000 / n, 3),
           "left_in_queue": left, "leaked_before_flush": leaked, "sink_complete": ok_sink}
    if kind == "smtp-sink":
        res["sink_msgs"] = smtp_sink_count(sinkfile)
        res["dups"] = res["sink_msgs"] - n
    else:
        got = pysink_mids(sinkfile)
        mids = [m for m, _, _ in got]
        res.update({"received": len(mids), "unique": len(set(mids) & want),
                    "dups": len(mids) - len(set(mids)),
                    "via_bdat": sum(1 for _, v, _ in got if v == "BDAT"),
                    "sink_conns": len(set(c for _, _, c in got))})
    res["ok"] = ok_sink and left == 0 and leaked == 0 and res["dups"] == 0
    print(json.dumps(res))

def cmd_emu(stats, bw, lat_ms, payload):
    bw, rtt = float(bw), 2 * float(lat_ms) / 1000
    recs = [json.loads(l) for l in open(stats) if l.strip()]
    summ = [r for r in recs if r.get("type") == "summary"][-1]
    conns = [r for r in recs if r.get("type") == "conn"]
    ev = []
    for c in conns:
        if "t_open" in c:
            ev += [(c["t_open"], 1), (c["t_close"], -1)]
    cur = best = 0
    for _, d in sorted(ev):
        cur += d; best = max(best, cur)
    up, down = summ["bytes_up"], summ["bytes_down"]
    m = max(summ["eod"], 1)
    print(json.dumps({"bytes_up": up, "bytes_down": down,
                      "limit_s": round(max(up, down) * 8 / bw + 4 * rtt, 3),
                      "limit_payload_s": round(int(payload) * 8 / bw + 4 * rtt, 3),
                      "conns": len(conns), "max_parallel_conns": best, "eod": summ["eod"],
                      "rt_total": summ["runs_down"], "rt_per_msg": round(summ["runs_down"] / m, 2),
                      "link_busy_up_s": summ["busy_up_s"]}))

if __name__ == "__main__":
    c = sys.argv[1]
    if c == "inject": cmd_inject(*sys.argv[2:7])
    elif c == "wait-held": cmd_wait_held(*sys.argv[2:5])
    elif c == "count": print(qcount(sys.argv[2]))
    elif c == "flush": cmd_flush(sys.argv[2:])
    elif c == "emu": cmd_emu(*sys.argv[2:6])
    else: sys.exit("unknown harness command " + c)
PYEOF

# ---- Postfix ---------------------------------------------------------------------------
note "Postfix instance in $PF (smtpd 127.0.0.1:$PF_SMTP unused, relayhost [127.0.0.1]:$PF_RELAY, held)"
"$KIT/postfix-instance.sh" init "$PF" --smtp-port "$PF_SMTP" --relay-port "$PF_RELAY" --defer
if [ -n "$PF_SET" ]; then
    IFS=';' read -ra kv <<< "$PF_SET"
    "$KIT/postfix-instance.sh" set "$PF" "${kv[@]}"
fi
PF_STARTED=1
"$KIT/postfix-instance.sh" start "$PF"
PF_MASTER=$("$KIT/postfix-instance.sh" status "$PF" | awk '$1=="running"{print $2}')
[ -n "$PF_MASTER" ] || die "Postfix master not running"

# ---- tidemail --------------------------------------------------------------------------
mkdir -p "$TD/bin" "$TD/log"
chmod 755 "$TD"
ln -s "$TM" "$TD/bin/sendmail"
TCONF="$TD/tidemail.toml"
cat > "$TCONF" <<EOF
# generated by benches/flush-vs-postfix.sh: the same settings as the Postfix instance
queue_directory = "$TQ"
data_directory = "$TD/data"
mail_spool_directory = "$TD/mail"
mail_owner = "nobody"
myhostname = "bench-tidemail.localdomain"
mydomain = "localdomain"
mydestination = ["\$myhostname", "localhost.\$mydomain", "localhost"]
inet_interfaces = ["127.0.0.1"]
inet_protocols = ["ipv4"]
mynetworks = ["127.0.0.0/8"]
relayhost = "[127.0.0.1]:$TM_RELAY"
disable_dns_lookups = true
defer_transports = ["smtp"]
alias_maps = []
alias_database = []
maillog_file = "$TD/log/maillog"
EOF
if [ -n "$TM_SET" ]; then
    IFS=';' read -ra kv <<< "$TM_SET"
    for a in "${kv[@]}"; do echo "${a%%=*} = ${a#*=}" >> "$TCONF"; done
fi
"$TM" -c "$TCONF" config check >/dev/null || die "tidemail rejects $TCONF"

start_tidemail() {
    "$TM" -c "$TCONF" daemon >>"$TD/log/daemon.out" 2>&1 &
    TM_PID=$!
    local _
    for _ in $(seq 1 200); do
        [ -S "$TQ/public/control" ] && return 0
        kill -0 "$TM_PID" 2>/dev/null || { cat "$TD/log/daemon.out" >&2; die "tidemail daemon exited"; }
        sleep 0.05
    done
    die "tidemail daemon: no control socket after 10 s"
}
start_tidemail

declare -A QUEUE=([postfix]="$PF/spool" [tidemail]="$TQ")
declare -A SENDMAIL=([postfix]="/usr/sbin/sendmail -C $PF/etc" [tidemail]="$TD/bin/sendmail -C $TCONF")
declare -A ROOTS=([postfix]="$PF_MASTER" [tidemail]="$TM_PID")
flush_cmd() {
    case "$1" in
        postfix) echo "/usr/sbin/postqueue -c $PF/etc -f" ;;
        tidemail) echo "$TM -c $TCONF flush --wait --timeout $2" ;;
    esac
}
sysname() { echo "$1${LABEL:+ ($LABEL)}"; }

purge() {
    local sys=$1 _
    case "$sys" in
        postfix) "$KIT/postfix-instance.sh" purge "$PF" ;;
        tidemail)
            find "$TQ" -mindepth 2 -maxdepth 2 -type f \
                \( -path "$TQ/maildrop/*" -o -path "$TQ/incoming/*" -o -path "$TQ/active/*" \
                -o -path "$TQ/deferred/*" -o -path "$TQ/hold/*" -o -path "$TQ/corrupt/*" \) \
                ! -name '.tmp.*' -delete 2>/dev/null || true ;;
    esac
    for _ in $(seq 1 100); do
        [ "$(python3 "$H" count "${QUEUE[$sys]}")" = 0 ] && return 0
        sleep 0.1
    done
    die "$sys: queue not empty after purge"
}

# wait_listen PORT: up to 10 s
wait_listen() {
    local _
    for _ in $(seq 1 200); do
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ] && return 0
        sleep 0.05
    done
    return 1
}
wait_file() { local _; for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }

RAW="$OUT/raw.jsonl"
: > "$RAW"
rec() { echo "$1" >> "$RAW"; }
merge() { python3 -c 'import json,sys; d={}; [d.update(json.loads(a)) for a in sys.argv[1:]]; print(json.dumps(d))' "$@"; }

# queue_held SYS TAG MIX: inject through the system's sendmail and wait until all are held
queue_held() {
    local sys=$1 tag=$2 mix=$3 n inj held
    purge "$sys"
    n=$(echo "$mix" | tr ',' '\n' | awk -Fx '{s += $1} END {print s}')
    inj=$(timeout 600 python3 "$H" inject "${SENDMAIL[$sys]}" "$tag" "$mix" 10 "$T/mids") \
        || die "$sys: injection failed"
    held=$(python3 "$H" wait-held "${QUEUE[$sys]}" "$n" 180)
    echo "$held" | grep -q "\"held\": $n, \"queued\": $n" || note "$sys: not all held: $inj $held"
    sleep 0.5
    sync
    merge "$inj" "$held"
}

start_helper() {        # start_helper OUTFILE CMD...: background, pid in HELPER_PID
    "${@:2}" > "$1" 2>&1 &
    HELPER_PID=$!
    HELPERS+=("$HELPER_PID")
}
stop_helper() {
    stop_pid "$1"
    local keep=() p
    for p in "${HELPERS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    HELPERS=("${keep[@]}")
}

declare -A MAILLOG=([postfix]="$PF/log/maillog" [tidemail]="$TD/log/maillog")
mkdir -p "$OUT/logs"
log_lines() { if [ -f "${MAILLOG[$1]}" ]; then wc -l < "${MAILLOG[$1]}"; else echo 0; fi; }
# save_log SYS L0 NAME: the system's mail-log lines written since line L0
save_log() { tail -n "+$(($2 + 1))" "${MAILLOG[$1]}" > "$OUT/logs/$3.maillog" 2>/dev/null || true; }

loopback() {
    local sys=$1 run=$2 pre sinkout res relay=${RELAY[$1]}
    note "loopback run $run: $sys, queueing $N x 2 KiB"
    pre=$(queue_held "$sys" "lb-$sys-$run" "${N}x2048")
    sinkout="$T/smtp-sink.out"
    rm -f "$sinkout"
    start_helper "$sinkout" /usr/sbin/smtp-sink -c -u nobody "127.0.0.1:$relay" 256
    local spid=$HELPER_PID
    wait_listen "$relay" || die "smtp-sink not listening on $relay"
    note "loopback run $run: $sys, flush"
    cp /dev/null "$T/flush.out"
    local l0; l0=$(log_lines "$sys")
    # shellcheck disable=SC2046
    res=$(python3 "$H" flush smtp-sink "$sinkout" "$T/mids" "${QUEUE[$sys]}" "${ROOTS[$sys]}" 300 "$T/flush.out" -- $(flush_cmd "$sys" 300))
    stop_helper "$spid"
    save_log "$sys" "$l0" "$sys-loopback-$run"
    local fo
    fo=$(tr '\r' '\n' < "$T/flush.out" | { grep -v '^$' || true; } | tail -3 | python3 -c 'import json,sys; print(json.dumps({"flush_out": sys.stdin.read().strip()}))')
    rec "$(merge "{\"system\": \"$(sysname "$sys")\", \"workload\": \"loopback\", \"case\": \"loopback-${N}x2KiB\", \"run\": $run}" "$pre" "$res" "$fo" "{\"load1\": $(cut -d' ' -f1 /proc/loadavg)}")"
    tail -1 "$RAW" >&2
    purge "$sys"
}

declare -A BW=([dialup]=56000 [satellite]=1000000)
declare -A LAT=([dialup]=150 [satellite]=300)
LINK_MIX="50x3072,5x51200"

link() {
    local sys=$1 prof=$2 run=$3 pre res emu relay=${RELAY[$1]} payload
    note "link $prof run $run: $sys, queueing $LINK_MIX"
    pre=$(queue_held "$sys" "ln-$prof-$sys-$run" "$LINK_MIX")
    payload=$(echo "$pre" | python3 -c 'import json,sys; print(json.load(sys.stdin)["payload_bytes"])')
    local slog="$T/sink.jsonl" sready="$T/sink.ready" estats="$T/emu-$sys-$prof-$run.jsonl" eready="$T/emu.ready"
    rm -f "$slog" "$sready" "$estats" "$eready"
    start_helper "$T/sink.err" python3 "$KIT/pysink.py" --listen "127.0.0.1:$SINK_BACK" --log "$slog" --ready-file "$sready" --chunking
    local spid=$HELPER_PID
    wait_file "$sready" || die "pysink did not start"
    start_helper "$T/emu.err" python3 "$KIT/linkemu.py" --listen "127.0.0.1:$relay" --upstream "127.0.0.1:$SINK_BACK" \
        --bw "${BW[$prof]}" --latency-ms "${LAT[$prof]}" --bw-scope shared --stats "$estats" --ready-file "$eready"
    local epid=$HELPER_PID
    wait_file "$eready" || die "linkemu did not start"
    wait_listen "$relay" || die "linkemu not listening on $relay"
    note "link $prof run $run: $sys, flush"
    cp /dev/null "$T/flush.out"
    local l0; l0=$(log_lines "$sys")
    # shellcheck disable=SC2046
    res=$(python3 "$H" flush pysink "$slog" "$T/mids" "${QUEUE[$sys]}" "${ROOTS[$sys]}" 400 "$T/flush.out" -- $(flush_cmd "$sys" 400))
    stop_helper "$epid"
    stop_helper "$spid"
    save_log "$sys" "$l0" "$sys-link-$prof-$run"
    emu=$(python3 "$H" emu "$estats" "${BW[$prof]}" "${LAT[$prof]}" "$payload")
    local fo ratio
    fo=$(tr '\r' '\n' < "$T/flush.out" | { grep -v '^$' || true; } | tail -3 | python3 -c 'import json,sys; print(json.dumps({"flush_out": sys.stdin.read().strip()}))')
    ratio=$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(json.dumps({"ratio": round(a["secs"]/b["limit_s"], 3)}))' "$res" "$emu")
    rec "$(merge "{\"system\": \"$(sysname "$sys")\", \"workload\": \"link\", \"case\": \"link-$prof\", \"run\": $run, \"bw\": ${BW[$prof]}, \"lat_ms\": ${LAT[$prof]}}" "$pre" "$res" "$emu" "$ratio" "$fo" "{\"load1\": $(cut -d' ' -f1 /proc/loadavg)}")"
    tail -1 "$RAW" >&2
    purge "$sys"
}

# ---- environment -----------------------------------------------------------------------
ENVF="$OUT/env.txt"
{
    echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "commit:     $(git -C "$REPO" rev-parse --short HEAD) ($(git -C "$REPO" status --porcelain -- src | wc -l) files under src/ changed or new in the work tree)"
    echo "machine:    $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB"
    echo "kernel:     $(uname -r)"
    echo "queue fs:   $(findmnt -no FSTYPE,SOURCE -T "$T" | tr -s ' ')"
    echo "postfix:    $(/usr/sbin/postconf -h -d mail_version)${PF_SET:+ ($PF_SET)}"
    echo "tidemail:   $("$TM" --version | head -1)${TM_SET:+ ($TM_SET)}, target/release/tidemail built $TM_BUILT, sha256 $(sha256sum "$TM" | cut -c1-12)"
    echo "python:     $(python3 --version 2>&1)"
    echo "command:    $0 $ARGS"
    echo "parameters: runs=$RUNS link-runs=$LINK_RUNS n=$N workloads=$WORKLOADS profiles=$PROFILES"
    echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$ENVF" | sed 's/^/# /' >&2

# ---- runs, interleaved -----------------------------------------------------------------
SYSTEMS=(postfix tidemail)
for w in $WORKLOADS; do
    case "$w" in
        loopback)
            for ((run = 1; run <= RUNS; run++)); do
                for sys in "${SYSTEMS[@]}"; do loopback "$sys" "$run"; done
            done ;;
        link)
            for prof in $PROFILES; do
                [ -n "${BW[$prof]:-}" ] || die "unknown profile $prof"
                for ((run = 1; run <= LINK_RUNS; run++)); do
                    for sys in "${SYSTEMS[@]}"; do link "$sys" "$prof" "$run"; done
                done
            done ;;
        *) die "unknown workload $w" ;;
    esac
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$ENVF"

# ---- report ----------------------------------------------------------------------------
python3 - "$RAW" > "$OUT/report.md" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
systems = []
for r in recs:
    if r["system"] not in systems:
        systems.append(r["system"])
cases = []
for r in recs:
    if r["case"] not in cases:
        cases.append(r["case"])
def vals(s, c, k):
    # failed runs (listed under the table) are left out of the statistics
    return [r[k] for r in recs if r["system"] == s and r["case"] == c and r.get("ok") and r.get(k) is not None]
def cell(xs, fmt):
    if not xs:
        return "-"
    m = statistics.median(xs)
    return fmt % m if len(xs) == 1 else (fmt + " [" + fmt + " - " + fmt + "]") % (m, min(xs), max(xs))
pf = systems[0]
for c in cases:
    link = c.startswith("link")
    print("\n**%s** (median [min - max]; complete runs: %s)\n" % (c, ", ".join("%s %d" % (s, len(vals(s, c, "secs"))) for s in systems)))
    print("| metric | " + " | ".join(systems) + " | " + " | ".join("%s vs %s" % (s, pf) for s in systems[1:]) + " |")
    print("|---" * (2 + 2 * (len(systems) - 1)) + "|")
    rows = [("secs", "%.2f s", False), ("secs_sink", "%.2f s", False)]
    rows += [("limit_s", "%.2f s", None), ("ratio", "%.3f", False), ("bytes_up", "%d", None), ("conns", "%d", None),
             ("max_parallel_conns", "%d", None), ("rt_per_msg", "%.2f", None), ("via_bdat", "%d", None)] if link else \
            [("msgs_per_s", "%.0f", True)]
    rows += [("cpu_ms_per_msg", "%.2f", False), ("secs_flush_cmd", "%.2f s", None), ("dups", "%d", None),
             ("load1", "%.2f", None)]
    for k, fmt, hb in rows:
        line = "| %s | " % k + " | ".join(cell(vals(s, c, k), fmt) for s in systems)
        for s in systems[1:]:
            a, b = vals(pf, c, k), vals(s, c, k)
            if hb is None or not a or not b or k == "ratio":
                line += " | -"
            else:
                ma, mb = statistics.median(a), statistics.median(b)
                line += " | %.2fx" % ((mb / ma) if hb else (ma / mb))
        print(line + " |")
    bad = [(r["system"], r["run"]) for r in recs if r["case"] == c and not r.get("ok")]
    if bad:
        print("\nFAILED runs, left out above (sink incomplete, queue not empty, or duplicates): %s" % bad)
print("\n\"vs\" columns: how many times faster than %s (ratio of medians; for msgs/s the ratio of msgs/s)." % pf)
EOF
cat "$OUT/report.md"
note "raw records: $RAW; report: $OUT/report.md; logs: $OUT/logs/"
