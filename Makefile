# Keyholder — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build run test test-race interop bench lint fmt demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/keyholderd ./cmd/keyholder ./cmd/device-sim

# Starts keyholderd on embedded defaults (SQLite and blobs under ./data).
run: build
	$(BIN)/keyholderd serve

# Unit, integration, interop and fuzz-seed tests, then the interop matrix.
# PostgreSQL suites run too when KEYHOLDER_TEST_POSTGRES holds a DSN, S3
# suites when KEYHOLDER_TEST_S3 names an S3 server (http://ACCESS:SECRET@host:port),
# the witnessed-log suites when litewitness is installed.
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -skip '^TestParties$$' $(PKGS)
	$(MAKE) interop

# The interop matrix (docs/parties.md): GnuPG, sq, sqop, RNP and OpenPGP.js
# as parties, both directions, against keyholderd and device-sim; about a
# minute. Tools that are missing are skipped, except under CI=true.
interop:
	$(GO) test -count=1 -run '^TestParties$$' ./internal/e2e

test-race:
	$(GO) test -race -count=1 $(PKGS)

# Throughput and latency measured against baselines in the same run.
bench:
	bash scripts/bench.sh

# The whole flow with real processes, narrated: server, phone, party, gpg.
# make demo PORT=9090 serves on that port (default: a free one).
demo:
	PORT='$(PORT)' bash scripts/demo.sh

# staticcheck at an exact version: tools.mod and tools.sum pin it and its
# dependencies (staticcheck 2026.2.2, honnef.co/go/tools v0.8.2) apart from
# the module's own requirements; `go tool` builds it from the module cache,
# offline after the first download. To raise it: go get -tool
# -modfile=tools.mod honnef.co/go/tools/cmd/staticcheck@VERSION, and fix
# what the new version finds.
STATICCHECK := $(GO) tool -modfile=tools.mod staticcheck

# Fails on any finding: go.mod and go.sum not tidy, a file gofmt would
# change, a go vet or a staticcheck report. .ci/run runs it before the tests.
lint:
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
