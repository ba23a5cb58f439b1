# netem_check: run by breakfix as `sh -c <this file> netem_check [port]` before a `netem`
# fault journals anything. Tries netem (and, with `port`, the prio qdisc and u32 filter a
# port match needs) on the loopback of a throwaway network namespace (`unshare -n`), so the
# node's own interfaces are never touched. Prints one line and always exits 0:
#   NETEM_OK | NETEM_MISSING | PRIO_MISSING | NETEM_UNKNOWN: <why>
command -v tc >/dev/null || { echo 'NETEM_UNKNOWN: tc (iproute2) is not installed'; exit 0; }
command -v unshare >/dev/null || { echo 'NETEM_UNKNOWN: unshare is not installed'; exit 0; }
out=$(unshare -n tc qdisc add dev lo root netem delay 1ms 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
  if printf '%s' "$out" | grep -q 'qdisc kind is unknown'; then
    echo NETEM_MISSING
  else
    echo "NETEM_UNKNOWN: $out"
  fi
  exit 0
fi
if [ "${1:-}" = port ]; then
  out=$(unshare -n sh -c 'tc qdisc add dev lo root handle 1: prio bands 4 && tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip dport 1 0xffff flowid 1:4' 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ]; then
    if printf '%s' "$out" | grep -qE 'kind is unknown|Unknown filter'; then
      echo PRIO_MISSING
    else
      echo "NETEM_UNKNOWN: $out"
    fi
    exit 0
  fi
fi
echo NETEM_OK
