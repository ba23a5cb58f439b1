# The node half of a self-test snapshot (src/engine/snapshot.rs): one line per item, in the
# order the items are given. Every item is a tag and its value:
#
#   F PATH     `F <sha256 of PATH>`, or `F missing`
#   U UNIT     `U <is-active>/<is-enabled>`
#   M DIR      `M <file> <sha256>` for every regular file in DIR (the static-pod manifests)
#   P VAR      `P <n>`: processes whose environment sets VAR (a fault's marker)
#   T -        `T <n>`: block-I/O limits set anywhere in the cgroup tree: cgroup v1
#              `MAJ:MIN N` lines and cgroup v2 io.max lines with a number (kernel docs,
#              admin-guide/cgroup-v1/blkio-controller and cgroup-v2 "IO Interface Files")
#   B PATH     `B <n>`: disk_fill's `.breakfix-fill-*` files at the top of PATH's filesystem
#   Q -        `Q <n>`: netem qdiscs
#   J DIR      `J <n>`: pending journal entries (DIR/*.json)
#
# Exits 0 unless an item is unknown (2).
set -u
while [ $# -ge 2 ]; do
  tag=$1 v=$2
  shift 2
  case $tag in
  F)
    if [ -e "$v" ]; then
      echo "F $(sha256sum <"$v" | cut -d' ' -f1)"
    else
      echo 'F missing'
    fi
    ;;
  U) echo "U $(systemctl is-active -- "$v")/$(systemctl is-enabled -- "$v" 2>/dev/null)" ;;
  M)
    for m in "$v"/*; do
      [ -f "$m" ] && echo "M $m $(sha256sum <"$m" | cut -d' ' -f1)"
    done
    ;;
  P) echo "P $(grep -l "$v=" /proc/[0-9]*/environ 2>/dev/null | wc -l)" ;;
  T)
    echo "T $(find /sys/fs/cgroup \( -name 'blkio.throttle.*_device' -o -name io.max \) 2>/dev/null |
      xargs -r cat 2>/dev/null | grep -cE '^[0-9]+:[0-9]+ ([0-9]+$|.*=[0-9])')"
    ;;
  B)
    top=$(df --output=target -- "$v" 2>/dev/null | tail -n 1)
    echo "B $(ls -A "$top" 2>/dev/null | grep -c '^\.breakfix-fill-')"
    ;;
  Q) echo "Q $(tc qdisc show 2>/dev/null | grep -c ' netem ')" ;;
  J) echo "J $(ls "$v"/*.json 2>/dev/null | wc -l)" ;;
  *)
    echo "$0: unknown item $tag" >&2
    exit 2
    ;;
  esac
done
exit 0
