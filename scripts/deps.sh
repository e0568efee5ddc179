#!/usr/bin/env bash
# Installs what building and testing lockguard needs on a fresh Debian/Ubuntu
# machine: Go (>= go.mod's toolchain line), the PostgreSQL server and client
# binaries (initdb, pg_ctl, postgres, psql, pgbench) and Chromium (the status
# page's browser test). Idempotent and quiet when everything is present.
# Prints the directory to put first on PATH for Go.
set -euo pipefail

# go.mod's toolchain line names the Go release lockguard is built and tested
# with (the newest patch release, for the standard library's security fixes);
# its go line is the oldest Go that can build it.
want_go=$(awk '/^toolchain go/{t=substr($2, 3)} /^go /{g=$2} END{print (t != "" ? t : g)}' "$(dirname "$0")/../go.mod")
log() { echo "deps: $*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		log "need root to run: $*"; exit 1; fi
}

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		as_root apt-get update -qq >&2
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Go: use the one on PATH or in /usr/local/go if new enough; otherwise fetch
# the official toolchain from the Go module proxy.
go_ok() {
	local v
	v=$("$1" env GOVERSION 2>/dev/null | sed 's/^go//') || return 1
	[ "$(printf '%s\n%s\n' "$want_go" "$v" | sort -V | head -1)" = "$want_go" ]
}
gobin=
for g in "$(command -v go || true)" /usr/local/go/bin/go "$HOME/.cache/lockguard/go/bin/go"; do
	if [ -n "$g" ] && [ -x "$g" ] && go_ok "$g"; then gobin=$(dirname "$g"); break; fi
done
if [ -z "$gobin" ]; then
	ver=$want_go
	case "$ver" in *.*.*) ;; *) ver="$ver.0" ;; esac
	arch=$(uname -m); case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
	proxy=${GOPROXY:-https://proxy.golang.org}; proxy=${proxy%%,*}
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$ver.linux-$arch.zip"
	log "installing Go $ver from the module proxy"
	command -v curl >/dev/null || apt_install curl ca-certificates
	command -v unzip >/dev/null || apt_install unzip
	tmp=$(mktemp -d)
	curl -fsSL -o "$tmp/go.zip" "$url"
	rm -rf "$HOME/.cache/lockguard/go"
	mkdir -p "$HOME/.cache/lockguard"
	unzip -q "$tmp/go.zip" -d "$tmp"
	mv "$tmp/golang.org/toolchain@v0.0.1-go$ver.linux-$arch" "$HOME/.cache/lockguard/go"
	chmod +x "$HOME/.cache/lockguard/go/bin/"* "$HOME/.cache/lockguard/go/pkg/tool/"*/* 2>/dev/null || true
	rm -rf "$tmp"
	gobin="$HOME/.cache/lockguard/go/bin"
fi

# cgo (pg_query_go) needs a C compiler.
command -v gcc >/dev/null || apt_install gcc libc6-dev

# PostgreSQL server binaries (any major version; Debian puts them under
# /usr/lib/postgresql/N/bin) and the client tools.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	log "installing PostgreSQL server binaries"
	apt_install postgresql
fi
if ! command -v psql >/dev/null || ! command -v pgbench >/dev/null; then
	apt_install postgresql-client
fi

# Chromium, for the end-to-end test of the status page in a real browser
# (test/browser_test.go; it fails in CI without one).
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ -z "${LOCKGUARD_CHROMIUM:-}" ]; then
	log "installing Chromium (for the status page test)"
	apt_install chromium
fi
echo "$gobin"
