# wasmgate: `make run` starts the demo, `make test` runs every test.
GO        ?= go
BIN       := build/bin
WASM_OUT  := build/plugins
PLUGIN_DIRS := $(wildcard plugins/*/main.go pluginsdk-examples/*/main.go)
# wazero files compiled modules under its own version, read from build info,
# which test binaries lack ("dev") and binaries have: pin it so the test
# binaries and the wasmgate binaries the tests build share one cache.
WAZERO_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/tetratelabs/wazero)
TEST_LDFLAGS := -ldflags=-X=github.com/tetratelabs/wazero/internal/version.version=$(WAZERO_VERSION)

.PHONY: build run test vet bench plugins mesh-demo clean

build: plugins
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/wasmgate ./cmd/wasmgate
	$(GO) build -o $(BIN)/echo ./cmd/echo

plugins:
	@mkdir -p $(WASM_OUT)
	@for f in $(PLUGIN_DIRS); do \
		d=$$(dirname $$f); n=$$(basename $$d); \
		echo "wasm  $$d -> $(WASM_OUT)/$$n.wasm"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $(WASM_OUT)/$$n.wasm ./$$d || exit 1; \
	done

run: build
	./$(BIN)/wasmgate demo -c configs/edge.yaml

vet:
	$(GO) vet ./...

test: vet plugins
	# build every Wasm guest and compile it into the suite's shared cache
	# without the race detector first (its compiler is 10x slower under -race)
	$(GO) test $(TEST_LDFLAGS) -count=1 ./internal/warmcache
	$(GO) test $(TEST_LDFLAGS) -race -timeout 15m ./...
	# memory bounds and allocation counts are meaningless under the race
	# detector (it grows memory and makes sync.Pool drop items): check them without it
	$(GO) test $(TEST_LDFLAGS) -count=1 -run 'BoundedInstances|NoAllocs' ./proxy

bench: build plugins
	$(GO) run ./bench

mesh-demo: build
	GO=$(GO) scripts/mesh-demo.sh

clean:
	rm -rf build .wasmgate-demo
