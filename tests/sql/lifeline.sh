# Runs one test database server and stops it when the test process is gone.
#
#   sh -c "$(cat lifeline.sh)" lifeline DIR SIGNAL COMMAND [ARG...]
#
# The test process keeps this shell's standard input (a pipe) open for as long as it lives.
# When it exits, however it exits, the pipe reaches end-of-file: the server gets SIGNAL
# (SIGKILL after 30 s), and DIR, the server's scratch directory, is removed. If the server
# stops by itself, DIR is removed too and this shell exits with the server's status.
dir=$1
signal=$2
shift 2
exec 3<&0
"$@" </dev/null 3<&- &
server=$!
(
    cat <&3 >/dev/null
    kill -"$signal" "$server" 2>/dev/null
    i=0
    while kill -0 "$server" 2>/dev/null && [ "$i" -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -KILL "$server" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
rm -rf "$dir"
exit "$status"
