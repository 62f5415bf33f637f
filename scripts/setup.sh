#!/usr/bin/env bash
# setup.sh - install the Debian packages tether's build, tests and
# benchmarks need, if any is missing.  Run as root (or with sudo).
set -euo pipefail

PKGS=(
    cmake gcc clang make pkg-config
    protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
    libjansson-dev libcurl4-openssl-dev libssl-dev libcmocka-dev
    libmicrohttpd-dev      # the metrics listener (headers; the library is loaded when used)
    libclang-rt-14-dev
    etcd-server etcd-client golang-go
    iproute2 procps psmisc openssl
    nftables util-linux    # tests/netns: partitions (nft), hosts (setpriv)
    python3                # tests: free ports, python3 -m http.server (test_sidecar.sh)
    dpkg-dev file          # cpack -G DEB: dpkg-shlibdeps, file
    systemd                # systemd-analyze verify (examples/systemd)
    prometheus chromium    # metrics and status page tests (real scraper, real browser)
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all packages present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
