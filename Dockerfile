# syntax=docker/dockerfile:1
#
# upgate container image. One image, two roles:
#
#   gateway: docker run ... upgate serve --config /etc/upgate/config.yaml
#            (mount the config at /etc/upgate/config.yaml; listens on FTP
#            2121, SFTP 2222, admin HTTP 9100 and the FTP passive range
#            30000-30019 as set in that config; bind to 0.0.0.0, not the
#            default loopback, inside a container)
#   agent:   docker run ... upgate agent --listen :7070 --root /srv \
#                --token-file /var/run/secrets/upgate/token
#            (mount the tree to serve at /srv and the shared token as a
#            secret)
#
# The default CMD is "serve"; override the arguments to pick the role.
#
# The build command below is exercised by dockerfile_test.go
# (TestDockerfileBuild), which runs the RUN ... go build line verbatim and
# checks the result is a static ELF that reports the version passed in
# VERSION. Keep exactly one such line and keep it on that shape.

# Pin the Go minor to the one go.mod declares (go 1.26.x). "golang:latest" would
# move to 1.27 unannounced and change the compiler, standard library and
# language semantics under the same Dockerfile; "1.26" still takes patch
# (security) releases on rebuild, and its newest patch satisfies go.mod's
# go line without GOTOOLCHAIN downloading another toolchain mid-build.
FROM golang:1.26 AS build

WORKDIR /src

# Module downloads in their own layer: rebuilt only when go.mod/go.sum (or the
# in-tree ftpserverlib fork that go.mod's replace points at) change.
COPY go.mod go.sum ./
COPY third_party/ third_party/
RUN go mod download

COPY . .

ARG VERSION=dev
# Static, reproducible binary: no cgo (the final image has no libc), no local
# paths, no symbol tables; the version is stamped into upgate.Version().
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/upgate/upgate.version=${VERSION}" -o /out/upgate ./cmd/upgate

# Distroless static: CA certificates, tzdata and /etc/passwd with the nonroot
# user (65532), no shell and no libc.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/upgate /usr/local/bin/upgate

USER 65532:65532

# FTP control, SFTP, admin HTTP, agent gRPC.
EXPOSE 2121 2222 9100 7070
# FTP passive data ports (ftp.passive_ports in the config).
EXPOSE 30000-30019

ENTRYPOINT ["/usr/local/bin/upgate"]
CMD ["serve"]
