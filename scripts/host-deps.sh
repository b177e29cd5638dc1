#!/usr/bin/env bash
# Host packages the sandboxes use, installed once when missing (Debian, as root):
#   libseccomp2  the seccomp filter (pyseccomp loads it)
#   slirp4netns  network egress for functions that opt in
#   runsc        gVisor, for functions that ask for strong isolation
#   iproute2     `ip`: the simulated hosts (network namespaces) of the cluster tests and bench
#   chromium     the console's browser tests (tests/e2e/test_console.py, make screenshots)
# Without root nothing is installed: ember then refuses full isolation at start
# unless run with --sandbox process, and says why.
set -euo pipefail
# The browser on its own: a host without one of the others must still get it.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (Debian)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "note: chromium not installed: the console's browser tests will say so" >&2
fi
missing=()
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing+=(libseccomp2)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
command -v runsc >/dev/null || missing+=(runsc)
command -v ip >/dev/null || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "note: not root, so not installing ${missing[*]} (needed for full isolation)" >&2
  exit 0
fi
echo "installing ${missing[*]} (Debian)"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
