#!/usr/bin/env bash
# A second "remote" SSH host for link-drop tests: network namespace mldesk-h1,
# joined to this machine by a veth pair in 198.18.0.0/30 (RFC 2544 benchmarking
# range, never routed on the internet), with an sshd on 198.18.0.2:22 that takes
# the same keys as sshd.sh.
#
#   netns-host.sh up        create namespace, link, addresses, sshd (idempotent)
#   netns-host.sh down      stop it all and remove the namespace
#   netns-host.sh cut       drop the link: packets vanish, connections hang/time out
#   netns-host.sh restore   bring the link back (established TCP sessions survive
#                           if the cut was shorter than their retransmission limit)
#   netns-host.sh status    exit 0 when up and the link is not cut
#   netns-host.sh env       print shell exports for the tests (nothing when down)
#
# The namespace shares this machine's file system, users and processes; only the
# network differs. From inside, this machine is 198.18.0.1 and nothing else is
# reachable (no default route). Needs root (CAP_NET_ADMIN).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=sshd.sh
source "$HERE/sshd.sh"   # STATE, keys, write_config

NS=mldesk-h1
HOST_IF=veth-mldesk
NS_IF=veth-mldesk-ns
HOST_IP=198.18.0.1
NS_IP=198.18.0.2
NS_PORT=22
NS_CONFIG=$STATE/sshd_netns_config
NS_PIDFILE=$STATE/sshd-netns.pid
NS_LOGFILE=$STATE/sshd-netns.log

nlog() { printf '[netns] %s\n' "$*" >&2; }

ns_exists() { [[ -e /run/netns/$NS ]]; }

ns_sshd_running() {
  local pid
  [[ -f $NS_PIDFILE ]] || return 1
  pid=$(<"$NS_PIDFILE")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' </proc/"$pid"/cmdline | grep -q -- "-f $NS_CONFIG"
}

# Safety net: with the host side of the veth down its connected route goes away,
# and 198.18.x traffic would follow the default route off this machine. The
# iptables rule keeps such traffic here and drops it silently (a hang, like a dead
# link); where iptables does not work, an "unreachable" route does the keeping.
GUARD=(OUTPUT -d 198.18.0.0/15 ! -o "$HOST_IF" -j DROP)
guard_add() {
  if iptables -C "${GUARD[@]}" 2>/dev/null || iptables -I "${GUARD[@]}" 2>/dev/null; then
    return 0
  fi
  nlog "iptables unusable: guarding 198.18.0.0/15 with an unreachable route instead"
  ip route replace unreachable 198.18.0.0/15 metric 4242
}
guard_del() {
  while iptables -C "${GUARD[@]}" 2>/dev/null; do iptables -D "${GUARD[@]}"; done
  ip route del unreachable 198.18.0.0/15 metric 4242 2>/dev/null || true
}

up() {
  mkdir -p /tmp/mldesk-ci
  exec 7>/tmp/mldesk-ci/netns.lock
  flock -w 120 7
  ensure_keys
  ns_exists || ip netns add "$NS"
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NS"
  fi
  ip addr replace "$HOST_IP/30" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr replace "$NS_IP/30" dev "$NS_IF"
  ip -n "$NS" link set lo up
  ip -n "$NS" link set "$NS_IF" up
  guard_add
  if ns_sshd_running; then
    nlog "sshd already running on $NS_IP:$NS_PORT in $NS (pid $(<"$NS_PIDFILE"))"
    return 0
  fi
  write_config "$NS_CONFIG" "$NS_IP" "$NS_PORT" "$NS_PIDFILE"
  mkdir -p /run/sshd
  /usr/sbin/sshd -t -f "$NS_CONFIG"
  ip netns exec "$NS" /usr/sbin/sshd -f "$NS_CONFIG" -E "$NS_LOGFILE" </dev/null >/dev/null 2>&1 7>&-
  for _ in $(seq 50); do
    if ns_sshd_running && ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$NS_IP/$NS_PORT" 2>/dev/null; then
      nlog "up: $NS, $HOST_IF $HOST_IP <-> $NS_IF $NS_IP, sshd on $NS_IP:$NS_PORT (pid $(<"$NS_PIDFILE"))"
      return 0
    fi
    sleep 0.1
  done
  nlog "sshd in $NS did not come up; last log lines:"
  tail -n 20 "$NS_LOGFILE" >&2 || true
  return 1
}

down() {
  local pid
  if ns_sshd_running; then
    kill "$(<"$NS_PIDFILE")"
  fi
  rm -f "$NS_PIDFILE"
  if ns_exists; then
    # Whatever the tests left running in the namespace (detached remote runs).
    for pid in $(ip netns pids "$NS"); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in $(ip netns pids "$NS"); do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  ip link del "$HOST_IF" 2>/dev/null || true
  ns_exists && ip netns del "$NS"
  guard_del
  nlog "down"
}

# Cut on the namespace side: the host side loses carrier but keeps its route,
# so packets are dropped silently (no "network unreachable" error): a dead link.
# (No function may be called "cut": sshd.sh's ensure_keys runs the cut command.)
link_cut() { ip -n "$NS" link set "$NS_IF" down; nlog "link cut"; }
link_restore() { ip -n "$NS" link set "$NS_IF" up; ip link set "$HOST_IF" up; nlog "link restored"; }

link_is_up() {
  ip -o link show "$HOST_IF" 2>/dev/null | grep -q '<[^>]*[<,]UP[,>]' &&
    ip -n "$NS" -o link show "$NS_IF" 2>/dev/null | grep -q '<[^>]*[<,]UP[,>]'
}

show_status() {
  if ! ns_exists || ! ns_sshd_running; then
    echo "down"; return 1
  fi
  if ! link_is_up; then
    echo "up, but the link is cut (netns-host.sh restore)"; return 1
  fi
  echo "up: ssh -p $NS_PORT root@$NS_IP (pid $(<"$NS_PIDFILE"))"
}

print_env() {
  ns_exists && ns_sshd_running || return 0
  cat <<ENV
export MLDESK_TEST_NETNS_HOST=$NS_IP
export MLDESK_TEST_NETNS_PORT=$NS_PORT
export MLDESK_TEST_NETNS_GATEWAY=$HOST_IP
export MLDESK_TEST_NETNS_NAME=$NS
export MLDESK_TEST_NETNS_SCRIPT=$HERE/netns-host.sh
ENV
}

case ${1:-} in
  up) up ;;
  down) down ;;
  cut) link_cut ;;
  restore) link_restore ;;
  status) show_status ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|cut|restore|status|env" >&2; exit 2 ;;
esac
