# stop_marked: run by breakfix as `sh -c <this file> stop_marked PID_FILE MARKER [PATH...]`.
#
# Stops the process named by PID_FILE if (and only if) its environment holds MARKER (e.g.
# BREAKFIX_FAULT_ID=18f3a...), and any other process carrying MARKER (one whose pid file was
# lost): SIGTERM, then SIGKILL after 5 s if it still carries the marker. Then removes each
# PATH (rm -rf). Never fails: an undo replayed twice finds nothing to do.
pid_file=$1 marker=$2
shift 2
marked() { tr '\0' '\n' < "/proc/$1/environ" 2>/dev/null | grep -qxF -- "$marker"; }
stop() {
  kill -TERM "$1" 2>/dev/null
  i=0
  while [ -d "/proc/$1" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if [ -d "/proc/$1" ] && marked "$1"; then kill -KILL "$1" 2>/dev/null; fi
}
p=$(cat -- "$pid_file" 2>/dev/null)
if [ -n "$p" ] && marked "$p"; then stop "$p"; fi
for d in /proc/[0-9]*; do
  q=${d#/proc/}
  if marked "$q"; then stop "$q"; fi
done
for f in "$@"; do rm -rf -- "$f"; done
true
