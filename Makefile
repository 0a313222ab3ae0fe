# FlareDB — the two commands:
#   make run    start the stock RocksDB server on ./flaredb-data (127.0.0.1:7070)
#   make test   run every test (installs what it needs first)
SHELL := /bin/bash
GO    ?= go
BIN   := bin
DATA  ?= ./flaredb-data
# Packages whose tests run under the race detector (everything).
RACE_PKGS ?= ./...

.PHONY: all deps build run test vet lint proto proto-check bench bench-server clean

all: build

deps:
	@scripts/ensure-deps.sh

build: deps
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/flaredb-server --data-dir $(DATA) $(ARGS)

# vet also builds and vets (tests included) for macOS and Windows: nothing is
# deployed or tested there, but the code must build (the pure-Go engines and
# the client are portable).
vet: deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) build ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./...
	GOOS=windows CGO_ENABLED=0 $(GO) build ./...
	GOOS=windows CGO_ENABLED=0 $(GO) vet ./...

proto:
	scripts/genproto.sh

proto-check:
	scripts/genproto.sh --check

test: deps vet proto-check
	$(GO) test -race -timeout 20m $(RACE_PKGS)

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

clean:
	rm -rf $(BIN)
