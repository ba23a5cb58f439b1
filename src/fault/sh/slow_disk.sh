# slow_disk: run by breakfix as `sh -c <this file> slow_disk <op> ...` on the node.
#
#   check-fsync PID       prints NO_STRACE, NO_SETSID or `TRACER <pid tracing PID; 0: none>`
#   check-fio PATH        prints NO_FIO or NO_SETSID, else `MNT <mount point>` and
#                         `AVAIL <KiB available>` of the filesystem holding PATH
#   start PID_FILE MARKER LOG RUN_DIR COMMAND...
#                         starts COMMAND detached (own session, no terminal, stdin and stdout
#                         /dev/null, stderr to LOG) with MARKER (NAME=value) in its
#                         environment, after writing its PID to PID_FILE (the same PID: the
#                         shell execs env, which execs COMMAND)
#   whole-disk MAJ:MIN    prints the MAJ:MIN of the disk holding that block device (itself
#                         when it is not a partition): throttles go on whole disks
#   throttle-candidates PID
#                         prints `V2 <io.max path> <ok|missing|read-only>` for each cgroup2
#                         mount and `V1 <blkio.throttle.write_iops_device path> <state>` for
#                         each v1 blkio mount, in PID's own cgroup
#   wait-traced PID PID_FILE LOG
#                         waits up to 10 s until PID's tracer is the process in PID_FILE and
#                         prints ATTACHED; exit 3 (and LOG) when that process died, 4 on timeout
#   wait-traced-marked PID MARKER PID_FILE LOG
#                         the same for a tracer that carries MARKER in its environment (the
#                         child of `watch`); exit 3 when the process in PID_FILE died
#   watch NAME USEC       forever: attach strace (every fdatasync/fsync delayed by USEC µs) to
#                         the newest process named NAME, and again when it ends (a restarted
#                         NAME is traced within 0.5 s); stopped by the fault's undo
#   wait-running PID_FILE LOG
#                         after 2 s, prints RUNNING when the process in PID_FILE runs; else
#                         prints LOG and exits 3
set -u
op=$1
shift
case "$op" in
  check-fsync)
    command -v strace >/dev/null || { echo NO_STRACE; exit 0; }
    command -v setsid >/dev/null || { echo NO_SETSID; exit 0; }
    awk '/^TracerPid:/ {print "TRACER " $2}' "/proc/$1/status"
    ;;
  check-fio)
    command -v fio >/dev/null || { echo NO_FIO; exit 0; }
    command -v setsid >/dev/null || { echo NO_SETSID; exit 0; }
    echo "MNT $(findmnt -n -o TARGET --target "$1")"
    echo "AVAIL $(df -Pk -- "$1" | awk 'NR==2 {print $4}')"
    ;;
  whole-disk)
    d=$1
    if [ -e "/sys/dev/block/$d/partition" ]; then cat "/sys/dev/block/$d/../dev"; else echo "$d"; fi
    ;;
  throttle-candidates)
    pid=$1
    cg2=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
    cg2=${cg2%/}
    cg1=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}blkio\(,[^:]*\)\{0,1\}://p' "/proc/$pid/cgroup")
    cg1=${cg1%/}
    st() { if [ ! -e "$1" ]; then echo missing; elif [ -w "$1" ]; then echo ok; else echo read-only; fi; }
    if [ -n "$(sed -n '/^0::/p' "/proc/$pid/cgroup")" ]; then
      for m in $(findmnt -rn -t cgroup2 -o TARGET); do
        f="$m$cg2/io.max"
        echo "V2 $f $(st "$f")"
      done
    fi
    if [ -n "$(sed -n '/^[0-9]*:\([^:]*,\)\{0,1\}blkio\(,[^:]*\)\{0,1\}:/p' "/proc/$pid/cgroup")" ]; then
      for m in $(findmnt -rn -t cgroup -o TARGET,OPTIONS | awk '$2 ~ /(^|,)blkio(,|$)/ {print $1}'); do
        f="$m$cg1/blkio.throttle.write_iops_device"
        echo "V1 $f $(st "$f")"
      done
    fi
    true
    ;;
  start)
    pid_file=$1 marker=$2 log=$3 run_dir=$4
    shift 4
    mkdir -p -- "$run_dir" && rm -f -- "$pid_file" || exit 1
    setsid -f sh -c 'echo $$ > "$1"; m=$2; shift 2; exec env "$m" "$@"' slow_disk_helper \
      "$pid_file" "$marker" "$@" </dev/null >/dev/null 2>"$log"
    ;;
  wait-traced)
    pid=$1 pid_file=$2 log=$3
    i=0
    while [ "$i" -lt 100 ]; do
      p=$(cat -- "$pid_file" 2>/dev/null)
      if [ -n "$p" ]; then
        t=$(awk '/^TracerPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        if [ "$t" = "$p" ]; then echo ATTACHED; exit 0; fi
        if [ ! -d "/proc/$p" ]; then echo 'strace exited:'; cat -- "$log"; exit 3; fi
      fi
      sleep 0.1
      i=$((i + 1))
    done
    echo 'strace did not attach within 10s:'
    cat -- "$log"
    exit 4
    ;;
  wait-traced-marked)
    pid=$1 marker=$2 pid_file=$3 log=$4
    i=0
    while [ "$i" -lt 100 ]; do
      t=$(awk '/^TracerPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
      if [ -n "$t" ] && [ "$t" != 0 ] &&
        tr '\0' '\n' <"/proc/$t/environ" 2>/dev/null | grep -qxF -- "$marker"; then
        echo ATTACHED
        exit 0
      fi
      p=$(cat -- "$pid_file" 2>/dev/null)
      if [ -n "$p" ] && [ ! -d "/proc/$p" ]; then echo 'the watcher exited:'; cat -- "$log"; exit 3; fi
      sleep 0.1
      i=$((i + 1))
    done
    echo 'strace did not attach within 10s:'
    cat -- "$log"
    exit 4
    ;;
  watch)
    name=$1 usec=$2
    while :; do
      p=$(pgrep -xn -- "$name")
      if [ -n "$p" ]; then
        strace -f -qq -o /dev/null -e trace=fdatasync,fsync \
          -e inject=fdatasync,fsync:delay_enter="$usec" -p "$p"
      fi
      sleep 0.5
    done
    ;;
  wait-running)
    pid_file=$1 log=$2
    sleep 2
    p=$(cat -- "$pid_file" 2>/dev/null)
    if [ -n "$p" ] && [ -d "/proc/$p" ]; then echo RUNNING; exit 0; fi
    echo 'fio exited:'
    cat -- "$log"
    exit 3
    ;;
  *)
    echo "slow_disk: unknown operation $op" >&2
    exit 2
    ;;
esac
