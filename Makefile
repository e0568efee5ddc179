# lockguard — run `make` for the list of targets.
SHELL := /bin/bash
# scripts/deps.sh installs Go and PostgreSQL when missing and prints Go's bin
# directory; it runs once, when a target first needs it.
GODIR = $(eval GODIR := $$(shell scripts/deps.sh))$(GODIR)
WITH_GO = PATH="$(GODIR):$$PATH" CGO_ENABLED=1
GO = $(WITH_GO) go
# Same flags in CI, the Dockerfile and local builds.
BUILD_FLAGS := -trimpath -ldflags="-s -w -X main.version=$(shell git describe --always --dirty 2>/dev/null || echo dev)"
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 30s

.DEFAULT_GOAL := help
.PHONY: help deps build run demo test test-race test-short bench fuzz lint vuln clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install Go and PostgreSQL if missing (apt-get, Go module proxy)
	@echo "Go: $(GODIR)/go"

build: ## build ./lockguard
	$(GO) build $(BUILD_FLAGS) -o lockguard ./cmd/lockguard

demo: build ## the incident, straight to PostgreSQL and through lockguard, side by side (report + chart in ./lockguard-demo)
	./lockguard demo $(ARGS)

run: build ## start a throwaway PostgreSQL and lockguard in front of it (Ctrl-C stops both)
	./lockguard serve --throwaway-postgres --listen 127.0.0.1:6432 $(ARGS)

test: ## gofmt, go vet and staticcheck, govulncheck, all tests with the race detector (the relay and fault suites also on the goroutine relay), then every benchmark once and each fuzz target for 3000 inputs
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory vuln
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	LOCKGUARD_TEST_EVENT_LOOPS=0 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -run 'TestRelay|TestFault|TestReliabilityBadMessages|TestSessionPanic' ./test/
	$(GO) test -run '^$$' -bench . -benchtime=1x -timeout $(TEST_TIMEOUT) ./...
	$(WITH_GO) scripts/fuzz.sh 3000x

test-race: test ## alias of test (it always uses the race detector)

test-short: ## unit tests only (no PostgreSQL)
	$(GO) test -short -count=1 ./proxy/... ./guard/... ./internal/config/...

bench: ## run the Go benchmarks with allocation counts
	$(GO) test -run '^$$' -bench . -benchmem -count=$${COUNT:-1} ./...

fuzz: ## run every fuzz target for FUZZTIME (default 30s) each
	$(WITH_GO) scripts/fuzz.sh $(FUZZTIME)

lint: ## gofmt, go vet, staticcheck
	@test -z "$$($(WITH_GO) gofmt -l $$(git ls-files '*.go'))" || { $(WITH_GO) gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# govulncheck without vuln.go.dev: the Go vulnerability database is the OSV
# data of the golang.org/x/vulndb module, fetched through the module proxy
# (SECURITY.md). Refresh: go list -m golang.org/x/vulndb@master, and set
# VULNDB_VERSION. The standard library's findings fail too, since go.mod's
# toolchain line pins the Go release (scripts/deps.sh installs it): raise it
# to the fixed patch release. VULN_STRICT= (empty) only warns about them, for
# a build with another Go.
GOVULNCHECK_VERSION ?= v1.9.0
VULN_STRICT ?= 1
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018

vuln: ## govulncheck against the Go vulnerability database from the module proxy: fails on vulnerable code lockguard calls, in modules and in the Go standard library
	@set -uo pipefail; \
	(cd / && $(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION)) || exit 1; \
	db="$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv"; \
	bin="$(HOME)/.cache/lockguard/govulncheck-$(GOVULNCHECK_VERSION)-$$($(GO) env GOVERSION)"; \
	[ -x "$$bin/govulncheck" ] || (cd / && GOBIN="$$bin" $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)) || exit 1; \
	out=$$($(WITH_GO) "$$bin/govulncheck" -db "file://$$db" ./... 2>&1); rc=$$?; \
	echo "$$out"; \
	if [ $$rc = 3 ] && [ -z '$(VULN_STRICT)' ] && ! grep -q 'Found in: .*@v' <<<"$$out"; then \
		fix=$$(grep -o 'Fixed in: [^ ]*@go[0-9.]*' <<<"$$out" | sed 's/.*@//' | sort -V | tail -1); \
		echo "vuln: WARNING: only the Go toolchain ($$($(GO) env GOVERSION)) is affected: build releases with $$fix or newer (VULN_STRICT=1, the default, fails on this)"; \
		rc=0; \
	fi; \
	exit $$rc

clean: ## remove build output
	rm -f lockguard
