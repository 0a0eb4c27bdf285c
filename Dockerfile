# syntax=docker/dockerfile:1
# Builds a static keyholderd (pure-Go SQLite, no cgo) on a minimal base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/keyholderd ./cmd/keyholderd
# The runtime image has no shell: prepare a data directory owned by the
# distroless "nonroot" user (65532) here, so a fresh volume is writable.
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keyholderd /usr/local/bin/keyholderd
COPY --from=build --chown=65532:65532 /out/data /data
ENV KEYHOLDER_LISTEN=0.0.0.0:8080 \
    KEYHOLDER_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/keyholderd"]
CMD ["serve"]
