#!/usr/bin/env bash
# Regenerates the Go code for every .proto file under proto/, with pinned
# tool versions. protoc comes from Debian (protobuf-compiler); the Go plugins
# are installed into .tools/bin at the versions below.
#
#   scripts/genproto.sh          regenerate
#   scripts/genproto.sh --check  fail if the committed code is not current
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

export GOBIN="$PWD/.tools/bin"
export PATH="$GOBIN:$PATH"
if ! command -v protoc >/dev/null 2>&1; then
  scripts/ensure-deps.sh protoc
fi
want() { [ -x "$GOBIN/$1" ] && [ "$(cat "$GOBIN/.$1.version" 2>/dev/null)" = "$2" ]; }
if ! want protoc-gen-go "$PROTOC_GEN_GO_VERSION"; then
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
  echo "$PROTOC_GEN_GO_VERSION" >"$GOBIN/.protoc-gen-go.version"
fi
if ! want protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"; then
  go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
  echo "$PROTOC_GEN_GO_GRPC_VERSION" >"$GOBIN/.protoc-gen-go-grpc.version"
fi

out=proto
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

mapfile -t files < <(cd proto && find . -name '*.proto' | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "no .proto files under proto/"; exit 0
fi
dest=$(cd "$out" && pwd)
(cd proto && protoc -I . \
  --go_out="$dest" --go_opt=paths=source_relative \
  --go-grpc_out="$dest" --go-grpc_opt=paths=source_relative \
  "${files[@]}")

if [ "${1:-}" = "--check" ]; then
  if ! diff <(cd proto && find . -name '*.pb.go' | sort) <(cd "$out" && find . -name '*.pb.go' | sort); then
    echo "the set of generated files differs: run scripts/genproto.sh" >&2; exit 1
  fi
  while read -r f; do
    if ! cmp -s "proto/$f" "$out/$f"; then
      echo "proto/$f is not current: run scripts/genproto.sh" >&2; exit 1
    fi
  done < <(cd "$out" && find . -name '*.pb.go' | sort)
  echo "generated protobuf code is current"
fi
