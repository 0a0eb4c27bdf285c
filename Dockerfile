# syntax=docker/dockerfile:1
# Builds a static keyholderd (pure-Go SQLite, no cgo) on a minimal base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/keyholderd ./cmd/keyholderd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keyholderd /usr/local/bin/keyholderd
ENV KEYHOLDER_LISTEN=0.0.0.0:8080 \
    KEYHOLDER_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/keyholderd"]
CMD ["serve"]
