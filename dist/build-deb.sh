#!/bin/sh
# Builds keyward's Debian package with cargo-deb:
#   dist/build-deb.sh            # -> target/debian/keyward_<version>-1_<arch>.deb
# keyward and keywardd are built with the release profile, keyward-unlock
# (the initramfs client) on its own with the size-optimised `initramfs`
# profile, so the daemon's features stay out of it. Needs cargo-deb
# (`cargo install cargo-deb`) and gzip.
set -eu
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || {
	echo "build-deb.sh: cargo-deb not found; install it: cargo install cargo-deb" >&2
	exit 1
}
cargo build --release -p keyward-cli -p keyward-node --bins
cargo build --profile initramfs -p keyward-unlock
mkdir -p target/man
for m in dist/man/*; do
	gzip -9n <"$m" >"target/man/${m##*/}.gz"
done
# cargo-deb strips keyward and keywardd (lintian wants stripped binaries).
cargo deb -p keyward-cli --no-build -o "${DEB_OUT:-target/debian/}"
