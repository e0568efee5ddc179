# syntax=docker/dockerfile:1
# Build: docker build -t lockguard .
# Run:   docker run -p 6432:6432 lockguard serve --listen 0.0.0.0:6432 --upstream db:5432 --admin 0.0.0.0:9633
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# cgo is required: pg_query_go embeds libpg_query (C). Same flags as `make build`.
ENV CGO_ENABLED=1
RUN go build -trimpath -ldflags="-s -w -X main.version=docker" -o /out/lockguard ./cmd/lockguard

# Small runtime with glibc (for the cgo binary), no shell, non-root (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lockguard /usr/local/bin/lockguard
USER nonroot:nonroot
EXPOSE 6432 9633
ENTRYPOINT ["/usr/local/bin/lockguard"]
CMD ["serve", "--listen", "0.0.0.0:6432", "--admin", "0.0.0.0:9633"]
