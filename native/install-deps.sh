#!/usr/bin/env bash
# Installs the Debian packages the native addon and the tools need, only when one is missing.
# Run by `npm install` (the package's install script); safe to run again.
set -euo pipefail
need=()
[[ -f /usr/include/isa-l/erasure_code.h || -f /usr/include/isa-l.h ]] || need+=(libisal-dev)
[[ -f /usr/include/xxhash.h ]] || need+=(libxxhash-dev)
[[ -f /usr/include/intel-ipsec-mb.h ]] || need+=(libipsec-mb-dev)  # AES-256-GCM for the transport
command -v fio >/dev/null || need+=(fio)
[[ -e /usr/lib/x86_64-linux-gnu/libfuse.so.2 || -e /lib/x86_64-linux-gnu/libfuse.so.2 ]] || need+=(libfuse2)
command -v fusermount3 >/dev/null || need+=(fuse3)
[[ -f /usr/include/fuse3/fuse.h ]] || need+=(libfuse3-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)  # binding.gyp asks it for libfuse 3's flags
command -v losetup >/dev/null || need+=(mount)
command -v getfattr >/dev/null || need+=(attr)
((${#need[@]} == 0)) && exit 0
if [[ $(id -u) != 0 ]]; then
  echo "ddfs: missing Debian packages: ${need[*]}; run as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "ddfs: installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${need[@]}" >/dev/null
