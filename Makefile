# harborflow — `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Every module of the workspace, found from go.work rather than kept by hand.
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
PKGS := $(addsuffix /...,$(MODULES))
# The end-to-end tests, behind the build tag e2e (make e2e).
E2E_PKGS := ./services/harborflow/e2e/...

# Tools, pinned, installed into .tmp/bin on first use.
TOOLS := $(CURDIR)/.tmp/bin
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
STATICCHECK_VERSION := v0.8.2
# Read images back in tests (pkg/buildah/buildahtest): crane validates, regctl inspects. regctl is the
# regclient the pkg module depends on.
CRANE_VERSION := v0.22.1
REGCTL_VERSION := v0.11.7
# Checks pkg/signature's signatures the way users will (cosign verify --key). The last cosign v2 release,
# which builds with Go 1.26; about 5 minutes on an empty module and build cache (2 CPUs).
COSIGN_VERSION := v2.6.5
export PATH := $(TOOLS):$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/harborflow/harborflow/services/harborflow.Version=$(VERSION)
CONFIG ?= deploy/harborflow.yaml
# `make run` needs webhook secrets and the Harbor stand-in's password; these are for a local machine only.
run: export HARBOR_WEBHOOK_AUTH ?= Bearer dev-secret
run: export REGISTRY_WEBHOOK_AUTH ?= Bearer dev-secret
run: export HARBOR_PASSWORD ?= Harbor12345
run: export COSIGN_PASSWORD ?= dev-cosign
demo: export HARBOR_WEBHOOK_AUTH ?= Bearer dev-secret
demo: export REGISTRY_WEBHOOK_AUTH ?= Bearer dev-secret
demo: export HARBOR_PASSWORD ?= Harbor12345
demo: export COSIGN_PASSWORD ?= dev-cosign

##@ Everyday
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-16s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: run
run: build docker-registry ## Run the whole system: every stage, embedded NATS, a Harbor stand-in (8880), a registry.wso2.com stand-in (5000); state in ./var (scripts/run.sh)
	CONFIG=$(CONFIG) ./scripts/run.sh $(if $(STAGES),--stages $(STAGES))

.PHONY: demo
demo: build ## With `make run` running (another terminal): publish wso2am 4.2.0 levels 15-19 and show the whole trail
	./bin/harborflow --config $(CONFIG) dev demo

.PHONY: registry
registry: docker-registry ## Run a local registry on 127.0.0.1:5000 that notifies `make run` of every push (deploy/registry.yml)
	@mkdir -p var/registry
	docker-registry serve deploy/registry.yml

.PHONY: harbor
harbor: build ## Run the Harbor stand-in on 127.0.0.1:8880 (admin / Harbor12345), state in ./var/harbor
	./bin/harborflow dev harbor --listen 127.0.0.1:8880 --data var/harbor

.PHONY: test
# The runtime tests (buildah with the overlay and vfs drivers, crane, regctl, cosign) fail here instead of skipping.
test: export HARBORFLOW_REQUIRE_RUNTIMES := 1
test: buildah $(TOOLS)/crane $(TOOLS)/regctl $(TOOLS)/cosign ## Run every test of every module, with the race detector
	go test -race -count=1 -timeout 12m $(PKGS)

.PHONY: e2e
e2e: docker-registry build ## End-to-end tests: bin/harborflow as a process against a real registry (docker-registry)
	HARBORFLOW_BIN=$(CURDIR)/bin/harborflow go test -tags e2e -count=1 -timeout 10m $(E2E_PKGS)

.PHONY: bench
bench: ## Run the Go benchmarks and the receiver load test (figures side by side with baselines)
	go test -run '^$$' -bench . -benchmem -count 1 $(PKGS)
	./scripts/load.sh

.PHONY: build
build: ## Build the binaries into bin/
	@mkdir -p bin
	go build -ldflags "$(LDFLAGS)" -o bin/harborflow ./services/harborflow/cmd/harborflow

##@ Code
.PHONY: generate
generate: $(TOOLS)/buf $(TOOLS)/protoc-gen-go ## Generate the Go code of proto/ (committed)
	cd proto && buf lint && buf generate

.PHONY: check-generate
check-generate: generate ## Fail when the committed generated code is stale
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code is stale: run 'make generate' and commit"; git status --porcelain -- proto; git diff --stat -- proto; exit 1; fi

.PHONY: tidy
tidy: ## go mod tidy in every module, then sync the workspace
	@for m in $(MODULES); do (cd $$m && go mod tidy); done
	go work sync

.PHONY: lint
lint: $(TOOLS)/staticcheck ## go vet, staticcheck and gofmt over every module
	go vet $(PKGS)
	go vet -tags e2e $(E2E_PKGS)
	staticcheck $(PKGS)
	staticcheck -tags e2e $(E2E_PKGS)
	@out=$$(gofmt -l $(MODULES) | grep -v '\.pb\.go$$' || true); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: buildah
buildah: ## Install buildah (Debian package) for the dockerfile builder, unless it is on PATH
	@command -v buildah >/dev/null 2>&1 || { \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing buildah (apt-get)"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq buildah >/dev/null; }
	@buildah --version

.PHONY: docker-registry
docker-registry: ## Install docker-registry (Debian package, CNCF distribution 2.8) for make e2e, unless it is on PATH
	@command -v docker-registry >/dev/null 2>&1 || { \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing docker-registry (apt-get)"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq docker-registry >/dev/null; }
	@docker-registry --version

.PHONY: clean
clean: ## Remove binaries, tools and the local NATS store
	rm -rf bin .tmp var

$(TOOLS)/buf:
	GOBIN=$(TOOLS) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(TOOLS)/crane:
	GOBIN=$(TOOLS) go install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)
$(TOOLS)/regctl:
	GOBIN=$(TOOLS) go install github.com/regclient/regclient/cmd/regctl@$(REGCTL_VERSION)
$(TOOLS)/cosign:
	GOBIN=$(TOOLS) go install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)
