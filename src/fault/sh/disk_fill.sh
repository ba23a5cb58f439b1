# disk_fill: run by breakfix as `sh -c <this file> disk_fill <op> ...` on the node.
#
#   measure PATH       prints `<fstype> <size> <used> <avail> <mount point>` (bytes) of the
#                      filesystem holding PATH (GNU df)
#   fill FILE BYTES    allocates BYTES bytes in FILE, which must not exist yet (fallocate; where
#                      the filesystem cannot, zeros are written); exit 3 when FILE exists.
#                      BYTES may be all the free space (`free: 0`): the filesystem needs a few
#                      blocks of that for the file's own extent tree, so when fallocate finds no
#                      space it allocates 1 MiB less at a time (at most 64 tries), then writes
#                      zeros to the brim; running out of space there is the goal, not an error
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
    nospace='No space left on device'
    if err=$(fallocate -l "$bytes" -- "$file" 2>&1); then
      :
    elif case "$err" in *"$nospace"*) true ;; *) false ;; esac; then
      rm -f -- "$file"
      n=$bytes tries=0
      while :; do
        n=$((n - 1048576)) tries=$((tries + 1))
        if [ "$n" -le 0 ] || [ "$tries" -gt 64 ]; then n=0; break; fi
        if fallocate -l "$n" -- "$file" 2>/dev/null; then break; fi
        rm -f -- "$file"
      done
      if ! err=$(head -c "$((bytes - n))" /dev/zero 2>&1 >> "$file"); then
        case "$err" in *"$nospace"*) ;; *) echo "$err" >&2; exit 1 ;; esac
      fi
    else
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
