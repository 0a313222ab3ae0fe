#!/usr/bin/env bash
# Installs the system packages FlareDB needs when they are missing, on Debian
# 12: librocksdb-dev (the RocksDB engine, via cgo), pkg-config, and protoc
# (only to regenerate protobuf code). Runs apt-get update first, as a fresh
# machine's package lists are empty. Needs root (or sudo).
#
#   scripts/ensure-deps.sh            rocksdb
#   scripts/ensure-deps.sh protoc     protoc too
set -euo pipefail
need=()
if [ ! -f /usr/include/rocksdb/c.h ] && ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists rocksdb; }; then
  need+=(librocksdb-dev)
fi
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ "${1:-}" = "protoc" ] && ! command -v protoc >/dev/null 2>&1; then need+=(protobuf-compiler); fi
[ "${#need[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing ${need[*]} and no apt-get here: install them with your package manager (or use the nix dev shell)" >&2
  exit 1
fi
echo "installing: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root to install ${need[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
