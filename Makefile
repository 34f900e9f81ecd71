# Gatehouse — see README.md. Every target runs on a fresh machine with Go and
# the PostgreSQL server binaries installed.
SHELL := /bin/bash
GO ?= go
DATA_DIR ?= ./.data
export DATA_DIR
# xcaddy builds the same Caddy as xcaddy.Dockerfile does.
XCADDY_VERSION ?= v0.4.5
CADDY_VERSION ?= v2.11.9
MODULE := github.com/gatehouse/gatehouse

.PHONY: all build run test lint bench bench-authsvc bench-edge bench-plugins bench-docservice services-build xcaddy-build clean

all: build

build:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

# Starts the whole stack in the foreground; Ctrl-C stops all of it.
run: build
	./bin/gatehouse-dev run

# go vet, then every test against a real PostgreSQL: DATABASE_URL's server when
# set, otherwise a private cluster under .data/test-postgres, stopped afterwards
# unless another test run still uses it.
test:
	$(GO) vet ./...
	@set -o pipefail; status=0; \
	$(GO) test -race -count=1 -timeout 20m ./... || status=$$?; \
	if [ -z "$$DATABASE_URL" ]; then $(GO) run ./cmd/gatehouse-dev db-stop --if-unused --dir .data/test-postgres; fi; \
	exit $$status

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

# Prints figures side by side with their baselines; never pass/fail.
bench: build bench-authsvc bench-edge bench-plugins bench-docservice

bench-authsvc:
	$(GO) run ./cmd/bench-authsvc

# With two or more CPUs, Caddy gets CPU 0 to itself and the load generator
# and upstream the others, so the figures are Caddy's (less noise).
bench-edge:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/caddy ./cmd/bench-edge
	@if [ "$$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then \
		taskset -c 1-$$(($$(nproc)-1)) ./bin/bench-edge -caddy bin/caddy -pin-caddy 0; \
	else ./bin/bench-edge -caddy bin/caddy; fi

bench-plugins:
	$(GO) run ./cmd/bench-plugins

bench-docservice:
	$(GO) run ./cmd/bench-docservice

# The build step of the services' Dockerfile (authsvc, docservice), run here
# without a Docker engine: its go build line, read from the Dockerfile, with
# bin/services for the image's /out.
services-build:
	@cmd=$$(sed -n 's/^RUN \(CGO_ENABLED=0 go build .*\)$$/\1/p' Dockerfile | sed 's| -o /out/| -o bin/services/|'); \
	if [ -z "$$cmd" ]; then echo "Dockerfile has no 'RUN CGO_ENABLED=0 go build' line"; exit 1; fi; \
	mkdir -p bin/services && echo "$$cmd" && eval "$$cmd"

# The build step of xcaddy.Dockerfile, run here without a Docker engine.
# caddymodules is a package of the repository's module, not a module itself:
# --with names the package, --replace points the module at this checkout
# ("--with $(MODULE)/caddymodules=." would replace a module of that name and
# fail on go.mod's module path). Before honouring the replacement, Go asks the
# proxy whether .../caddymodules is a module of its own; a proxy that answers
# 403 instead of 404 would stop the build, so an empty file proxy after "|"
# turns any answer into "not found".
# The build runs in bin/xcaddy-context, a copy of exactly what the
# Dockerfile's builder stage COPYs (read from its COPY lines), so a package
# the image's build context lacks fails here too, not only in docker build.
XCADDY_GOPROXY ?= $(shell $(GO) env GOPROXY | cut -d, -f1)|file://$(CURDIR)/bin/.noproxy
XCADDY_CONTEXT := bin/xcaddy-context
xcaddy-build:
	@rm -rf $(XCADDY_CONTEXT) && mkdir -p $(XCADDY_CONTEXT) bin/.noproxy
	@awk '/^FROM/ { stage++ } stage == 1 && /^COPY/ && !/--from/ { for (i = 2; i < NF; i++) print $$i }' xcaddy.Dockerfile | \
		while read -r src; do cp -R "$$src" $(XCADDY_CONTEXT)/ || exit 1; done
	cd $(XCADDY_CONTEXT) && GOPROXY='$(XCADDY_GOPROXY)' $(GO) run github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION) build $(CADDY_VERSION) \
		--output $(CURDIR)/bin/caddy-xcaddy --with $(MODULE)/caddymodules --replace $(MODULE)=.
	@rm -rf $(XCADDY_CONTEXT)

clean:
	rm -rf bin
