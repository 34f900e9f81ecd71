# Gatehouse's Caddy image: the official Caddy image with caddymodules built in.
# Build from the repository root:
#   docker build -f xcaddy.Dockerfile -t gatehouse-caddy .
# `make xcaddy-build` runs the same xcaddy command locally (no Docker needed)
# on a copy of what this stage's COPY lines name, so CI exercises the build
# step and its build context.
#
# Run it next to authsvc and docservice, reachable from the container:
#   docker run -p 8080:8080 -e AUTHSVC_UPSTREAM=authsvc:8000 \
#     -e DOCSERVICE_UPSTREAM=docservice:8001 -v gatehouse-web:/srv/web/dist gatehouse-caddy
# (the Caddyfile's other variables as in README.md; the SPA's files go to
# /srv/web/dist, the default GATEHOUSE_WEB_ROOT under the image's /srv).
#
# The tags are pinned to the Caddy version the Makefile builds (CADDY_VERSION)
# so the image and `make xcaddy-build` agree.
FROM caddy:2.11.9-builder AS builder
# go.mod asks for a newer Go than an older builder image may ship; the
# official images say GOTOOLCHAIN=local, which would refuse to build.
ENV GOTOOLCHAIN=auto
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
# xcaddy's `go mod tidy -e` then reports that authsvc is missing: only
# caddymodules' tests import it, so the message is harmless.
RUN mkdir -p /tmp/noproxy && \
    GOPROXY="$(go env GOPROXY | cut -d, -f1)|file:///tmp/noproxy" \
    xcaddy build --output /usr/bin/caddy \
        --with github.com/gatehouse/gatehouse/caddymodules \
        --replace github.com/gatehouse/gatehouse=.

FROM caddy:2.11.9
COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY Caddyfile /etc/caddy/Caddyfile
# The Caddyfile's default site address (GATEHOUSE_SITE_ADDRESS=:8080); a
# real domain uses 80 and 443, which the base image already exposes.
EXPOSE 8080
