# breakfix's node lock (src/journal/lock.rs): one owner per node, with a lease.
#
#   lock take FILE TOKEN TAKEOVER LEASE_SECONDS LINE...
#       Takes or renews the lock FILE for TOKEN. A lock held by another token is replaced
#       when its lease has ended or its token is TAKEOVER (a holder proven dead). The LINEs
#       (key=value) are written to FILE with `expires=<now + LEASE_SECONDS>`.
#       Exit 0: taken (stdout `previous` and the former owner's lines when one was replaced);
#       3: held by another live owner (stdout `held` and its lines); 4: the guard file stayed
#       busy for 5 s; 5: FILE's directory or guard cannot be created.
#   lock release FILE TOKEN
#       Removes FILE if TOKEN holds it; always exits 0.
#
# Every change happens under flock on FILE.guard, so two engines never both win.
set -u
op=$1 f=$2 me=$3
shift 3
case $op in
take)
  takeover=$1 lease=$2
  shift 2
  mkdir -p "$(dirname "$f")" || exit 5
  exec 9>>"$f.guard" || exit 5
  flock -w 5 9 || { echo "the lock's guard file $f.guard stayed busy for 5 s"; exit 4; }
  now=$(date +%s)
  if [ -s "$f" ]; then
    tok=$(sed -n 's/^token=//p' "$f")
    exp=$(sed -n 's/^expires=//p' "$f")
    case "$exp" in '' | *[!0-9]*) exp=0 ;; esac
    if [ "$tok" != "$me" ]; then
      if [ "$exp" -gt "$now" ] && [ "$tok" != "$takeover" ]; then
        echo held
        cat "$f"
        exit 3
      fi
      echo previous
      cat "$f"
    fi
  fi
  printf '%s\n' "$@" "expires=$((now + lease))" >"$f.tmp" && mv -f "$f.tmp" "$f"
  ;;
release)
  exec 9>>"$f.guard" || exit 0
  flock -w 5 9
  [ "$(sed -n 's/^token=//p' "$f" 2>/dev/null)" = "$me" ] && rm -f "$f"
  exit 0
  ;;
*)
  echo "$0: unknown operation $op" >&2
  exit 2
  ;;
esac
