# Gatehouse's Caddy image: the official Caddy image with caddymodules built in.
# Build from the repository root:
#   docker build -f xcaddy.Dockerfile -t gatehouse-caddy .
# `make xcaddy-build` runs the same xcaddy command locally (no Docker needed)
# on a copy of what this stage's COPY lines name, so CI exercises the build
# step and its build context.
FROM caddy:2.11-builder AS builder
WORKDIR /src
# Only what caddymodules compiles from (it imports internal/ and nothing
# else of ours), so the build context's data directories stay out and the
# layer cache survives edits elsewhere. xcaddy replaces the module with ".".
COPY go.mod go.sum ./
COPY caddymodules ./caddymodules
COPY internal ./internal
# caddymodules is a package of the module github.com/gatehouse/gatehouse:
# --with names the package, --replace points the module at this directory.
# The "|file://" proxy turns any proxy answer about the (non-existent)
# module .../caddymodules into "not found", so the replacement is used.
RUN mkdir -p /tmp/noproxy && \
    GOPROXY="$(go env GOPROXY | cut -d, -f1)|file:///tmp/noproxy" \
    xcaddy build --output /usr/bin/caddy \
        --with github.com/gatehouse/gatehouse/caddymodules \
        --replace github.com/gatehouse/gatehouse=.

FROM caddy:2.11
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY Caddyfile /etc/caddy/Caddyfile
