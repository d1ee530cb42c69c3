#!/usr/bin/env bash
# benches/local-vs-postfix.sh - local delivery (the `local` transport) of tidemail against
# Postfix's local(8), side by side in one interleaved run, on the same machine, with the
# shared benchmark kit's private Postfix instance (../shared/bench/postfix-instance.sh).
#
#   sudo benches/local-vs-postfix.sh                         # mbox and Maildir, 3 runs each, N=1000
#   sudo benches/local-vs-postfix.sh --runs 5 --n 500 --cases maildir --no-build
#
# What is measured: local deliveries per second, 2 KiB messages, one recipient each (a
# throwaway system user, `tmbench`, created with useradd when missing, its home in the
# scratch dir), to an mbox file (mail_spool_directory, mode 1777) or to a Maildir
# (home_mailbox = Maildir/). Delivery only, not submission:
#   1. N messages with unique Message-IDs are submitted through each system's sendmail
#      command (10 submitters; untimed) while local delivery is held
#      (defer_transports = local in both), until all N are in the deferred queue;
#      the queue settles 0.5 s, sync;
#   2. the flush: Postfix `postqueue -c DIR/etc -f` (returns at once), tidemail
#      `tidemail -c CONF flush --wait --timeout 600` with its daemon running;
#   3. the clock stops when the mailbox holds N messages ("From " lines at the start of a
#      line for mbox, read incrementally; files in Maildir/new/) and the queue is empty
#      (files in maildrop, incoming, active, deferred, hold; tidemail's `.tmp.*` excluded),
#      polled every 20 ms by the same Python harness for both. msgs/s = N / secs.
#      secs_first = until the first message is in the mailbox.
# Correctness, per run: the mailbox read back with Python's mailbox module holds exactly
# the N Message-IDs injected, each once; the mail log written during the flush has N
# `status=sent (delivered to mailbox)` (or `delivered to maildir`) lines for the user; the
# queue is empty. A run failing any of these is recorded with "ok": false.
# CPU = user+system seconds of each system's daemon process tree during the flush (Postfix:
# the master and its children; tidemail: the daemon, its privileged local-delivery helper
# and the helper's per-delivery children, counted once reaped), read 0.5 s after the end.
#
# Both systems: mydestination = $myhostname, localhost.$mydomain, localhost,
# local.bench.example (the recipient is tmbench@local.bench.example), empty alias_maps,
# no local_recipient_maps, everything else at its default (Postfix:
# local_destination_concurrency_limit = 2, i.e. two local(8) processes for the one user).
# Runs interleave per case: postfix, tidemail, postfix, tidemail, ...; the case's settings
# are applied before its first run (Postfix: postconf -e + reload; tidemail: new config and a
# daemon restart). tidemail's daemon is started as root (it forks the local delivery helper,
# then drops to mail_owner = nobody), like a deployed one. Its SMTP service is put on a free
# bench port ([service.smtp]; without it the daemon would listen on 127.0.0.1:25).
#
# Options:
#   --runs R          runs per case per system (default 3)
#   --n N             messages per run (default 1000)
#   --cases LIST      mbox,maildir (default both)
#   --tm-set 'k=v;..' extra tidemail settings (TOML values)
#   --pf-set 'k=v;..' extra Postfix settings (postconf -e)
#   --user NAME       the recipient account (default tmbench; created when missing)
#   --no-build        do not run cargo build --release
#   --keep            keep the scratch dir (mailboxes, logs, configs) instead of removing it
#   --strace          diagnosis, not figures: attach `strace -f -c -w` to each system's whole
#                     process tree for every flush (summary in OUT/strace-SYS-CASE-RUN.txt;
#                     strace slows every system call down, so the times are not comparable)
#   --out DIR         raw records, report and logs (default target/local-vs-postfix-STAMP)
#
# Needs root. Installs postfix (no configuration: the system-wide instance is not used) and
# iproute2 when missing. Ports: two in 20000-20999 on 127.0.0.1 for the Postfix instance's
# (unused) smtpd and relayhost. Scratch in one temp dir, removed on exit; every process
# started here is stopped by its pid on exit, also on Ctrl-C. The user is left in
# /etc/passwd (home reset to /nonexistent) for the next run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
KIT=${BENCH_KIT:-$REPO/../shared/bench}
RUNS=3
N=1000
CASES="mbox maildir"
TM_SET=""
PF_SET=""
BUSER=tmbench
BUILD=1
KEEP=0
STRACE=0
OUT=""
ARGS="$*"
DOMAIN=local.bench.example

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --n) N=$2; shift 2 ;;
        --cases) CASES=$(echo "$2" | tr , ' '); shift 2 ;;
        --tm-set) TM_SET=$2; shift 2 ;;
        --pf-set) PF_SET=$2; shift 2 ;;
        --user) BUSER=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        --strace) STRACE=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 ;;
    esac
done

die() { echo "local-vs-postfix: $*" >&2; exit 1; }
note() { echo "# $(date +%H:%M:%S) $*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root (a private Postfix instance and a system user need it)"
[ -x "$KIT/postfix-instance.sh" ] || die "benchmark kit not found (set BENCH_KIT=/path/to/shared/bench)"
for c in $CASES; do case "$c" in mbox|maildir) ;; *) die "unknown case $c" ;; esac; done

# ---- tools -----------------------------------------------------------------------------
need=()
[ -x /usr/sbin/postfix ] || need+=(postfix)
[ "$STRACE" = 0 ] || command -v strace >/dev/null || need+=(strace)
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
T=$(mktemp -d "$base/local-vs-postfix.XXXXXX")
chmod 755 "$T"          # the daemons and the recipient must reach their files
[ -n "$OUT" ] || OUT="$REPO/target/local-vs-postfix-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/logs"
# a private copy of the binary: colleagues' builds may replace target/release/tidemail mid-run
cp "$TM" "$T/tidemail.bin"
TM_BUILT=$(stat -c %y "$TM" | cut -d. -f1)
TM="$T/tidemail.bin"
chmod 755 "$TM"
PF="$T/postfix"
TD="$T/tidemail"
TQ="$TD/queue"
HOMEDIR="$T/home"
TM_PID=""
PF_STARTED=0
HELPERS=()
USER_MADE=0

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
    cp "$PF/log/maillog" "$OUT/logs/postfix.maillog" 2>/dev/null || true
    cp "$TD/log/maillog" "$OUT/logs/tidemail.maillog" 2>/dev/null || true
    cp "$TD/log/daemon.out" "$OUT/logs/tidemail.daemon.out" 2>/dev/null || true
    if [ "$USER_MADE" = 1 ]; then usermod -d /nonexistent "$BUSER" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then note "kept $T"; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the recipient -----------------------------------------------------------------------
if ! id "$BUSER" >/dev/null 2>&1; then
    note "creating system user $BUSER"
    useradd --system --user-group --no-create-home --home-dir "$HOMEDIR" --shell /usr/sbin/nologin "$BUSER"
else
    usermod -d "$HOMEDIR" "$BUSER"
fi
USER_MADE=1
[ "$(id -u "$BUSER")" != 0 ] || die "$BUSER is root"
mkdir -p "$HOMEDIR"
chown "$BUSER:$(id -gn "$BUSER")" "$HOMEDIR"
chmod 755 "$HOMEDIR"
mkdir -p "$T/pf-spool" "$T/tm-spool"
chmod 1777 "$T/pf-spool" "$T/tm-spool"
RCPT="$BUSER@$DOMAIN"

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
PF_SMTP=$(free_port); PF_RELAY=$(free_port); TM_SMTP=$(free_port)

# ---- the harness (Python, standard library only) ----------------------------------------
H="$T/harness.py"
cat > "$H" <<'PYEOF'
import concurrent.futures, email.utils, json, mailbox, os, random, re, subprocess, sys, time, zlib

SENDER = "a@sender.example"
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

def make_message(rcpt, mid, size, idx, seed):
    rnd = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    hdr = ("From: Bench Sender <%s>\nTo: <%s>\nSubject: local bench message %d\nDate: %s\n"
           "Message-ID: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
           % (SENDER, rcpt, idx, email.utils.formatdate(localtime=False), mid))
    body, left = [], max(0, size - len(hdr))
    while left > 0:
        n = min(76, max(left - 1, 1))
        body.append("".join(rnd.choice(alphabet) for _ in range(n)) + "\n")
        left -= n + 1
    return (hdr + "".join(body)).encode("ascii")

def cmd_inject(cmd, rcpt, tag, n, size, conc, mids_out):
    msgs = []
    for i in range(int(n)):
        mid = "<local.%s.%d@bench.example>" % (tag, i)
        msgs.append((mid, make_message(rcpt, mid, int(size), i, zlib.crc32(tag.encode()) + i)))
    argv = cmd.split() + ["-i", "-f", SENDER, rcpt]
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

class MboxCounter:
    """Counts "From " at the start of a line, reading only what was appended since."""
    def __init__(self, path):
        self.path, self.off, self.n, self.at_bol = path, 0, 0, True
    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except OSError:
            return self.n
        end = data.rfind(b"\n")
        if end < 0:
            return self.n
        chunk = data[:end + 1]
        if self.at_bol and chunk.startswith(b"From "):
            self.n += 1
        self.n += chunk.count(b"\nFrom ")
        if chunk.endswith(b"\nFrom "):       # cannot happen: chunk ends with a newline
            pass
        self.off += end + 1
        self.at_bol = True
        return self.n

class MaildirCounter:
    def __init__(self, path):
        self.new = os.path.join(path, "new")
    def count(self):
        try:
            return sum(1 for e in os.scandir(self.new) if not e.name.startswith("."))
        except OSError:
            return 0

def read_back(kind, path):
    mids = []
    if kind == "mbox":
        if not os.path.exists(path):
            return mids
        box = mailbox.mbox(path, create=False)
    else:
        if not os.path.isdir(path):
            return mids
        box = mailbox.Maildir(path, factory=None, create=False)
    for m in box:
        mids.append((m.get("Message-ID") or "").strip())
    return mids

def cmd_run(args):
    # run KIND MAILBOX MIDSFILE QUEUE ROOTPIDS TIMEOUT FLUSHOUT -- FLUSH COMMAND...
    kind, mbox, midsfile, q, roots, timeout, flushout = args[:7]
    fcmd = args[8:]
    roots = [int(x) for x in roots.split(",") if x]
    want = [l.strip() for l in open(midsfile) if l.strip()]
    n = len(want)
    counter = MboxCounter(mbox) if kind == "mbox" else MaildirCounter(mbox)
    leaked = counter.count()
    cpu0 = proc_tree_cpu(roots)
    fo = open(flushout, "wb")
    t0 = time.monotonic()
    fp = subprocess.Popen(fcmd, stdout=fo, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    end = t0 + float(timeout)
    t_cmd = rc = t_first = t_all = None
    last = [None, time.monotonic()]
    while True:
        now = time.monotonic()
        if t_cmd is None and fp.poll() is not None:
            t_cmd, rc = now, fp.returncode
        got, left = counter.count(), qcount(q)
        if t_first is None and got > leaked:
            t_first = now
        if t_all is None and got >= n:
            t_all = now
        if got >= n and left == 0:
            break
        if (got, left) != last[0]:
            last = [(got, left), now]
        elif now - last[1] > 90 or now > end:
            break
        time.sleep(0.02)
    t_done = time.monotonic()
    if t_cmd is None:
        try:
            rc = fp.wait(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            fp.kill(); rc = fp.wait()
        t_cmd = time.monotonic()
    time.sleep(0.5)
    cpu = proc_tree_cpu(roots) - cpu0
    got, left = counter.count(), qcount(q)
    mids = read_back(kind, mbox)
    wantset = set(want)
    res = {"secs": round(t_done - t0, 3), "msgs_per_s": round(n / (t_done - t0), 1),
           "secs_first": round(t_first - t0, 3) if t_first else None,
           "secs_mailbox": round(t_all - t0, 3) if t_all else None,
           "secs_flush_cmd": round(t_cmd - t0, 3), "flush_rc": rc,
           "cpu_s": round(cpu, 3), "cpu_ms_per_msg": round(cpu * 1000 / n, 3),
           "mailbox_count": got, "left_in_queue": left, "leaked_before_flush": leaked,
           "read_back": len(mids), "unique": len(set(mids)), "dups": len(mids) - len(set(mids)),
           "missing": len(wantset - set(mids)), "foreign": len(set(mids) - wantset)}
    res["ok"] = (len(mids) == n and res["dups"] == 0 and res["missing"] == 0 and res["foreign"] == 0
                 and left == 0 and leaked == 0 and got == n)
    print(json.dumps(res))

def cmd_logcheck(path, l0, rcpt, text):
    # mail-log lines after line l0: deliveries to rcpt whose status text is `text`
    sent = other = 0
    first = last = None
    with open(path, errors="replace") as f:
        for i, line in enumerate(f):
            if i < int(l0) or ("to=<%s>" % rcpt) not in line:
                continue
            if "status=sent (%s)" % text in line:
                sent += 1
            elif "status=" in line:
                other += 1
    print(json.dumps({"log_sent": sent, "log_other_status": other}))

if __name__ == "__main__":
    c = sys.argv[1]
    if c == "inject": cmd_inject(*sys.argv[2:9])
    elif c == "wait-held": cmd_wait_held(*sys.argv[2:5])
    elif c == "count": print(qcount(sys.argv[2]))
    elif c == "run": cmd_run(sys.argv[2:])
    elif c == "logcheck": cmd_logcheck(*sys.argv[2:6])
    else: sys.exit("unknown harness command " + c)
PYEOF

# ---- Postfix ---------------------------------------------------------------------------
note "Postfix instance in $PF (held: defer_transports = local)"
"$KIT/postfix-instance.sh" init "$PF" --smtp-port "$PF_SMTP" --relay-port "$PF_RELAY"
"$KIT/postfix-instance.sh" set "$PF" \
    "mydestination = \$myhostname, localhost.\$mydomain, localhost, $DOMAIN" \
    "defer_transports = local" "alias_maps =" "alias_database =" "local_recipient_maps =" \
    "mail_spool_directory = $T/pf-spool" "home_mailbox ="
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
write_tconf() {         # write_tconf CASE
    local hm='""'
    [ "$1" = maildir ] && hm='"Maildir/"'
    cat > "$TCONF" <<EOF
# generated by benches/local-vs-postfix.sh: the same settings as the Postfix instance
queue_directory = "$TQ"
data_directory = "$TD/data"
mail_owner = "nobody"
myhostname = "bench-tidemail.localdomain"
mydomain = "localdomain"
mydestination = ["\$myhostname", "localhost.\$mydomain", "localhost", "$DOMAIN"]
inet_interfaces = ["127.0.0.1"]
inet_protocols = ["ipv4"]
mynetworks = ["127.0.0.0/8"]
relayhost = "[127.0.0.1]:$PF_RELAY"
disable_dns_lookups = true
defer_transports = ["local"]
alias_maps = []
alias_database = []
local_recipient_maps = []
mail_spool_directory = "$T/tm-spool"
home_mailbox = $hm
maillog_file = "$TD/log/maillog"
EOF
    if [ -n "$TM_SET" ]; then
        local a
        IFS=';' read -ra kv <<< "$TM_SET"
        for a in "${kv[@]}"; do echo "${a%%=*} = ${a#*=}" >> "$TCONF"; done
    fi
    # The daemon's SMTP server (issue 6) would listen on port 25 by default: give it an
    # unused bench port instead (a binary without [service.*] tables refuses it: then none).
    cp "$TCONF" "$TCONF.base"
    printf '\n[service.smtp]\naddress = ["127.0.0.1"]\nport = %s\n' "$TM_SMTP" >> "$TCONF"
    if ! "$TM" -c "$TCONF" config check >/dev/null 2>&1; then
        mv "$TCONF.base" "$TCONF"
    fi
    rm -f "$TCONF.base"
    "$TM" -c "$TCONF" config check >/dev/null || die "tidemail rejects $TCONF"
}
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
write_tconf mbox
start_tidemail

declare -A QUEUE=([postfix]="$PF/spool" [tidemail]="$TQ")
declare -A SENDMAIL=([postfix]="/usr/sbin/sendmail -C $PF/etc" [tidemail]="$TD/bin/sendmail -C $TCONF")
declare -A MAILLOG=([postfix]="$PF/log/maillog" [tidemail]="$TD/log/maillog")
declare -A SPOOL=([postfix]="$T/pf-spool" [tidemail]="$T/tm-spool")
flush_cmd() {
    case "$1" in
        postfix) echo "/usr/sbin/postqueue -c $PF/etc -f" ;;
        tidemail) echo "$TM -c $TCONF flush --wait --timeout 600" ;;
    esac
}
roots() { case "$1" in postfix) echo "$PF_MASTER" ;; tidemail) echo "$TM_PID" ;; esac; }
mailbox_of() {          # mailbox_of SYS CASE
    case "$2" in
        mbox) echo "${SPOOL[$1]}/$BUSER" ;;
        maildir) echo "$HOMEDIR/Maildir" ;;
    esac
}
clear_mailboxes() {
    rm -rf "$HOMEDIR/Maildir" "$HOMEDIR/Mailbox"
    rm -f "$T/pf-spool/$BUSER" "$T/pf-spool/$BUSER.lock" "$T/tm-spool/$BUSER" "$T/tm-spool/$BUSER.lock"
}

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

apply_case() {          # apply_case CASE: both systems
    local hm=""
    [ "$1" = maildir ] && hm="Maildir/"
    "$KIT/postfix-instance.sh" set "$PF" "home_mailbox = $hm"
    stop_tidemail
    write_tconf "$1"
    start_tidemail
    sleep 1
}

RAW="$OUT/raw.jsonl"
: > "$RAW"
merge() { python3 -c 'import json,sys; d={}; [d.update(json.loads(a)) for a in sys.argv[1:]]; print(json.dumps(d))' "$@"; }
# a pid and all its descendants (one ps snapshot)
tree_pids() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1]=$2 }
        END { found[root]=1; changed=1
              while (changed) { changed=0
                  for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p]=1; changed=1 } }
              for (p in found) print p }'
}
log_lines() { if [ -f "${MAILLOG[$1]}" ]; then wc -l < "${MAILLOG[$1]}"; else echo 0; fi; }

one_run() {             # one_run SYS CASE RUN
    local sys=$1 case=$2 run=$3 inj held res lc l0 text mb fo
    purge "$sys"
    clear_mailboxes
    note "$case run $run: $sys, queueing $N x 2 KiB for $RCPT (held)"
    inj=$(timeout 900 python3 "$H" inject "${SENDMAIL[$sys]}" "$RCPT" "$case-$sys-$run" "$N" 2048 10 "$T/mids") \
        || die "$sys: injection failed"
    held=$(python3 "$H" wait-held "${QUEUE[$sys]}" "$N" 300)
    echo "$held" | grep -q "\"held\": $N, \"queued\": $N" || note "$sys: not all held: $inj $held"
    sleep 0.5
    sync
    mb=$(mailbox_of "$sys" "$case")
    l0=$(log_lines "$sys")
    note "$case run $run: $sys, flush"
    : > "$T/flush.out"
    local spid=""
    if [ "$STRACE" = 1 ]; then
        local sargs=() p
        for p in $(tree_pids "$(roots "$sys")"); do sargs+=(-p "$p"); done
        strace -f -c -w -o "$OUT/strace-$sys-$case-$run.txt" "${sargs[@]}" 2>/dev/null &
        spid=$!
        HELPERS+=("$spid")
        sleep 1
    fi
    # shellcheck disable=SC2046
    res=$(python3 "$H" run "$case" "$mb" "$T/mids" "${QUEUE[$sys]}" "$(roots "$sys")" 900 "$T/flush.out" -- $(flush_cmd "$sys"))
    sleep 0.3
    if [ -n "$spid" ]; then
        kill -INT "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        HELPERS=()
    fi
    text="delivered to mailbox"
    [ "$case" = maildir ] && text="delivered to maildir"
    lc=$(python3 "$H" logcheck "${MAILLOG[$sys]}" "$l0" "$RCPT" "$text")
    tail -n "+$((l0 + 1))" "${MAILLOG[$sys]}" > "$OUT/logs/$sys-$case-$run.maillog" 2>/dev/null || true
    fo=$(tr '\r' '\n' < "$T/flush.out" | { grep -v '^$' || true; } | tail -3 | python3 -c 'import json,sys; print(json.dumps({"flush_out": sys.stdin.read().strip()}))')
    local rec
    rec=$(merge "{\"system\": \"$sys\", \"case\": \"$case\", \"run\": $run, \"n\": $N}" "$inj" "$held" "$res" "$lc" "$fo" \
        "{\"load1\": $(cut -d' ' -f1 /proc/loadavg)}")
    # the log must show every delivery, and only deliveries
    rec=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); n=int(sys.argv[2]); r["ok"]=bool(r["ok"] and r["log_sent"]==n and r["log_other_status"]==0); print(json.dumps(r))' "$rec" "$N")
    echo "$rec" >> "$RAW"
    echo "$rec" >&2
    purge "$sys"
}

# ---- environment -----------------------------------------------------------------------
ENVF="$OUT/env.txt"
{
    echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    dirty=$(git -C "$REPO" status --porcelain | wc -l)
    echo "commit:     $(git -C "$REPO" rev-parse --short HEAD)$([ "$dirty" -gt 0 ] && echo " with uncommitted work ($dirty paths changed or new)")"
    echo "machine:    $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/{print $2}') GiB"
    echo "kernel:     $(uname -r)"
    echo "mail fs:    $(findmnt -no FSTYPE,SOURCE,OPTIONS -T "$T" | tr -s ' ')"
    echo "postfix:    $(/usr/sbin/postconf -h -d mail_version)${PF_SET:+ ($PF_SET)}"
    echo "tidemail:   $("$TM" --version | head -1)${TM_SET:+ ($TM_SET)}, target/release/tidemail built $TM_BUILT, sha256 $(sha256sum "$TM" | cut -c1-12)"
    echo "recipient:  $RCPT (uid $(id -u "$BUSER"))"
    echo "command:    $0 $ARGS"
    echo "parameters: runs=$RUNS n=$N cases=$CASES"
    echo "load:       $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$ENVF" | sed 's/^/# /' >&2

# ---- runs, interleaved -----------------------------------------------------------------
SYSTEMS=(postfix tidemail)
for case in $CASES; do
    note "case $case"
    apply_case "$case"
    for ((run = 1; run <= RUNS; run++)); do
        for sys in "${SYSTEMS[@]}"; do one_run "$sys" "$case" "$run"; done
    done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$ENVF"

# ---- report ----------------------------------------------------------------------------
python3 - "$RAW" > "$OUT/report.md" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
systems = ["postfix", "tidemail"]
cases = []
for r in recs:
    if r["case"] not in cases:
        cases.append(r["case"])
def vals(s, c, k):
    return [r[k] for r in recs if r["system"] == s and r["case"] == c and r.get("ok") and r.get(k) is not None]
def cell(xs, fmt):
    if not xs:
        return "-"
    m = statistics.median(xs)
    return fmt % m if len(xs) == 1 else (fmt + " [" + fmt + " - " + fmt + "]") % (m, min(xs), max(xs))
for c in cases:
    print("\n**%s** (median [min - max]; complete runs: %s)\n" % (c, ", ".join("%s %d" % (s, len(vals(s, c, "secs"))) for s in systems)))
    print("| metric | postfix | tidemail | tidemail vs postfix |")
    print("|---|---|---|---|")
    for k, fmt, hb in [("msgs_per_s", "%.0f", True), ("secs", "%.2f s", False), ("secs_first", "%.3f s", None),
                       ("cpu_ms_per_msg", "%.2f", False), ("secs_flush_cmd", "%.2f s", None), ("load1", "%.2f", None)]:
        a, b = vals("postfix", c, k), vals("tidemail", c, k)
        ratio = "-"
        if hb is not None and a and b:
            ma, mb = statistics.median(a), statistics.median(b)
            ratio = "%.2fx" % ((mb / ma) if hb else (ma / mb))
        print("| %s | %s | %s | %s |" % (k, cell(a, fmt), cell(b, fmt), ratio))
    print("\nper run (msgs/s): " + "; ".join("%s %s %d: %.0f (load1 %.2f)%s" % (r["system"], c, r["run"], r["msgs_per_s"], r["load1"], "" if r.get("ok") else " FAILED")
                                             for r in recs if r["case"] == c))
    bad = [(r["system"], r["run"]) for r in recs if r["case"] == c and not r.get("ok")]
    if bad:
        print("\nFAILED runs, left out above: %s" % bad)
print("\n\"vs\" column: how many times faster than Postfix (ratio of medians).")
EOF
cat "$OUT/report.md"
note "raw records: $RAW; report: $OUT/report.md; logs: $OUT/logs/"
