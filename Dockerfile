# Gatehouse's services image: authsvc and docservice, static binaries on a
# distroless base (no shell, runs as the non-root user 65532). compose.yaml
# runs one container of each from it; Caddy has its own image
# (xcaddy.Dockerfile). Build from the repository root:
#   docker build -t gatehouse-services .
# `make services-build` runs this build stage's go build locally (no Docker
# engine needed), and CI runs it, so the command is tested.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# .dockerignore keeps .data (a development cluster, keys) and bin/ out.
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/authsvc ./cmd/docservice
# The directories the services write (and the watched folder they read),
# to be owned by the runtime user: a named volume mounted there starts as a
# copy of them, owner included. The distroless stage has no shell to chown
# with, so they are copied in whole, each a new directory of the COPY that
# --chown applies to.
RUN mkdir -p /out/root/data /out/root/config /out/root/watch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authsvc /out/docservice /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/root/ /
USER 65532:65532
# Keys, documents and settings live under these; compose.yaml mounts
# volumes there. Each service listens on its private port, never published.
ENV DATA_DIR=/data APP_CONFIG_DIR=/config
EXPOSE 8000 8001
