# The `process` probe's node program (src/probe/process.rs): finds one process and prints
# its PID on the first line, then its command line, one argument per line.
#
#   process unit UNIT     the unit's main process (systemd's MainPID)
#   process name NAME     the oldest process whose name is exactly NAME (`pgrep -x -o`)
#
# Prints nothing when there is no such process (or it exited meanwhile, or is a zombie,
# whose command line is empty). Exits 0 unless the way is unknown (2).
set -u
how=$1 what=$2
case $how in
unit) pid=$(systemctl show -p MainPID --value -- "$what" 2>/dev/null) ;;
name) pid=$(pgrep -x -o -- "$what" 2>/dev/null) ;;
*)
  echo "$0: unknown way $how" >&2
  exit 2
  ;;
esac
case $pid in '' | 0 | *[!0-9]*) exit 0 ;; esac
args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || exit 0
[ -n "$args" ] || exit 0
echo "$pid"
printf '%s\n' "$args"
