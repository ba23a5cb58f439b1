# disk_fill: run by breakfix as `sh -c <this file> disk_fill <op> ...` on the node.
#
#   measure PATH       prints `<fstype> <size> <used> <avail> <mount point>` (bytes) of the
#                      filesystem holding PATH (GNU df)
#   fill FILE BYTES    allocates BYTES bytes in FILE, which must not exist yet (fallocate; where
#                      the filesystem cannot, zeros are written); exit 3 when FILE exists
set -eu
op=$1
shift
case "$op" in
  measure)
    df -B1 --output=fstype,size,used,avail,target -- "$1" | tail -n 1
    ;;
  fill)
    file=$1 bytes=$2
    if [ -e "$file" ] || [ -L "$file" ]; then
      echo "$file already exists" >&2
      exit 3
    fi
    if ! fallocate -l "$bytes" -- "$file" 2>/dev/null; then
      rm -f -- "$file"
      head -c "$bytes" /dev/zero > "$file"
    fi
    sync -f -- "$file" 2>/dev/null || true
    ;;
  *)
    echo "disk_fill: unknown operation $op" >&2
    exit 2
    ;;
esac
