# Sourced by scripts/test.sh: make sure a Docker engine answers for the container tier's
# tests. One that already answers (DOCKER_HOST, or /var/run/docker.sock) is used as it is;
# otherwise, as root with Debian's docker.io installed, a private dockerd is started under
# target/iso/docker (its own data root and socket, no bridge, no iptables rules: containers
# get only lo) and stopped when the script exits.
docker_engine() {
  if docker version >/dev/null 2>&1; then
    echo "docker engine: ${DOCKER_HOST:-unix:///var/run/docker.sock}"
    return 0
  fi
  if ! command -v dockerd >/dev/null || [ "$(id -u)" != 0 ]; then
    echo "docker engine: none (the container tier's tests will fail): install Debian's docker.io and run this as root, or set DOCKER_HOST" >&2
    return 0
  fi
  local iso=$PWD/target/iso/docker
  mkdir -p "$iso"
  local sock=$iso/docker.sock
  # A unix socket path has at most 107 bytes.
  [ ${#sock} -lt 100 ] || sock=$(mktemp -d /tmp/oxydra-docker.XXXXXX)/docker.sock
  # gVisor as the runtime `runsc` when it is installed (Debian's runsc): ptrace platform
  # (KVM here is paravirtual), no network of its own, and the workspace's unix sockets
  # (the egress proxy, the gateway, the shell sidecar) usable across the sandbox.
  local runtimes=""
  if [ -x /usr/bin/runsc ]; then
    runtimes=',"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--platform=ptrace","--network=none","--host-uds=all"]}}'
  fi
  cat >"$iso/daemon.json" <<JSON
{"data-root":"$iso/data","exec-root":"$iso/exec","pidfile":"$iso/dockerd.pid",
 "hosts":["unix://$sock"],"bridge":"none","iptables":false,"ip6tables":false,"ip-masq":false$runtimes}
JSON
  setsid dockerd --config-file "$iso/daemon.json" >"$iso/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  trap 'kill -TERM "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null || true' EXIT
  export DOCKER_HOST=unix://$sock
  for _ in $(seq 1 300); do
    docker version >/dev/null 2>&1 && { echo "docker engine: started dockerd (pid $DOCKERD_PID) on $DOCKER_HOST"; return 0; }
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "docker engine: dockerd did not start; its log:" >&2
  tail -20 "$iso/dockerd.log" >&2
  return 1
}
