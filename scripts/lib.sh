# Shared by scripts/setup, scripts/test and scripts/bench (sourced, not run). Paths are relative to the repo
# root, which every script cd's to first.

# Debian packages haplane's tools and tests need (bookworm names). Binaries the tests use: haproxy, etcd,
# etcdctl, dockerd + docker (with containerd, runc, tini pulled in as dependencies), busybox (static, for the
# test image), wrk (benchmarks), chromium (Playwright's browser, by executable path), ip, setpriv, pebble
# (Let's Encrypt's ACME test server, for the certificate-issuing tests), promtool (from prometheus: `promtool
# check metrics` on /metrics, `promtool check/test rules` on deploy/prometheus' example alerts). For deploy/:
# debootstrap (the container image's Debian root filesystem), systemd (systemd-analyze verify on the units).
HAPLANE_APT_PACKAGES=(
  haproxy etcd-server etcd-client docker.io busybox-static wrk chromium fonts-liberation prometheus
  iproute2 ca-certificates procps util-linux git python3-venv pebble
  debootstrap systemd
)

# uv makes installs several times faster; pinned so every machine resolves the same way.
HAPLANE_UV_VERSION="0.13.9"

VENV=".venv"
VPY="$VENV/bin/python"

say() { printf '%s\n' "[$(basename "$0")] $*" >&2; }

# The packages of HAPLANE_APT_PACKAGES that are not installed, one per line.
apt_missing() {
  local pkg status
  for pkg in "${HAPLANE_APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || printf '%s\n' "$pkg"
  done
}

# A python3 of version >= 3.11 to build the venv with: $PYTHON, python3, python3.11, in that order.
find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3 python3.11 python3.12 python3.13; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
         >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}
