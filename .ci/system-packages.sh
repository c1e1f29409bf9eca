#!/usr/bin/env bash
# Debian packages some tests use (docs/monitoring.md, docs/testing.md): the real Prometheus
# server and promtool (`prometheus`), and the full Fashion-MNIST (`dataset-fashion-mnist`).
# Installed only when missing, as root, with apt-get; never fails the build: without them
# the tests that need them skip and say why.
set -uo pipefail

want=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || want+=(prometheus)
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || want+=(dataset-fashion-mnist)
[ ${#want[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: ${want[*]} not installed and this is not root with apt-get;" \
         "the tests that need them will skip (as root: apt-get install -y ${want[*]})"
    exit 0
fi

# Keep the package from starting a system Prometheus on :9090 (the tests start their own).
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
fi
install() {
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
        "${want[@]}" >/tmp/kubenas-apt.log 2>&1
}
echo "system-packages: apt-get install ${want[*]}"
if ! install; then
    timeout 300 apt-get update -q >>/tmp/kubenas-apt.log 2>&1
    install || echo "system-packages: could not install ${want[*]} (offline?); the tests" \
                    "that need them will skip. Log: /tmp/kubenas-apt.log"
fi
[ -n "$guard" ] && rm -f "$guard"
exit 0
