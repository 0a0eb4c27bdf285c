# Keyholder — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build run test test-race bench lint fmt demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/... ./device-sim

# Starts keyholderd on embedded defaults (SQLite and blobs under ./data).
run: build
	$(BIN)/keyholderd serve

# Unit, integration, interop (GnuPG) and fuzz-seed tests. PostgreSQL suites
# run too when KEYHOLDER_TEST_POSTGRES holds a DSN.
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 $(PKGS)

test-race:
	$(GO) test -race -count=1 $(PKGS)

# Throughput and latency measured against baselines in the same run.
bench:
	bash scripts/bench.sh

# The whole flow with real processes, narrated: server, phone, party, gpg.
# make demo PORT=9090 serves on that port (default: a free one).
demo:
	PORT='$(PORT)' bash scripts/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
