#!/bin/sh
# Installs keyward from a built tree (cargo build --release).
#
#   dist/install.sh [--prefix /usr] [--destdir DIR] [--target DIR]
#
# --prefix   where bin/, lib/ and share/ go (default /usr). The initramfs-tools
#            hook and init-bottom script always go to /usr/share/initramfs-tools
#            (the only place initramfs-tools reads package hooks from), and the
#            config to /etc/keyward.
# --destdir  stage everything under DIR (packaging, tests); also $DESTDIR.
# --target   directory holding the keyward, keywardd and keyward-unlock
#            binaries (default: target/release of this repository; the
#            initramfs client is also looked for in target/initramfs, where
#            `cargo build --profile initramfs -p keyward-unlock` puts it).
#
# An existing /etc/keyward/keyward.toml is never overwritten.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
prefix=/usr
destdir="${DESTDIR:-}"
target="$repo/target/release"

usage() {
	sed -n '2,15s/^# \{0,1\}//p' "$0"
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix)
		[ $# -ge 2 ] || die "--prefix needs a directory"
		prefix="$2"
		shift 2
		;;
	--prefix=*)
		prefix="${1#*=}"
		shift
		;;
	--destdir)
		[ $# -ge 2 ] || die "--destdir needs a directory"
		destdir="$2"
		shift 2
		;;
	--destdir=*)
		destdir="${1#*=}"
		shift
		;;
	--target)
		[ $# -ge 2 ] || die "--target needs a directory"
		target="$2"
		shift 2
		;;
	--target=*)
		target="${1#*=}"
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
done

case "$prefix" in
/*) prefix="${prefix%/}" ;;
*) die "--prefix must be an absolute path" ;;
esac
[ -n "$prefix" ] || prefix=/usr
destdir="${destdir%/}"

for b in keyward keywardd; do
	[ -x "$target/$b" ] || die "$target/$b not found; build first: cargo build --release"
done
unlock="$target/keyward-unlock"
[ -x "$unlock" ] || unlock="$repo/target/initramfs/keyward-unlock"
[ -x "$unlock" ] || die "keyward-unlock not found in $target or $repo/target/initramfs; build it: cargo build --profile initramfs -p keyward-unlock"

bindir="$prefix/bin"
libdir="$prefix/lib/keyward"
unitdir="$prefix/lib/systemd/system"
docdir="$prefix/share/doc/keyward"
itdir=/usr/share/initramfs-tools
confdir=/etc/keyward

# Copies $2 to $destdir$3 with mode $1, pointing /usr paths at $prefix.
put() {
	mode="$1"
	src="$2"
	dst="$destdir$3"
	mkdir -p "$(dirname "$dst")"
	tmp="$dst.new.$$"
	sed -e "s|/usr/bin/keyward|$bindir/keyward|g" \
		-e "s|/usr/lib/keyward/|$libdir/|g" "$src" >"$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dst"
	echo "installed $3"
}

putbin() {
	dst="$destdir$bindir/$1"
	mkdir -p "$destdir$bindir"
	cp "$target/$1" "$dst.new.$$"
	chmod 0755 "$dst.new.$$"
	mv -f "$dst.new.$$" "$dst"
	echo "installed $bindir/$1"
}

putbin keyward
putbin keywardd
mkdir -p "$destdir$libdir"
cp "$unlock" "$destdir$libdir/keyward-unlock.new.$$"
chmod 0755 "$destdir$libdir/keyward-unlock.new.$$"
mv -f "$destdir$libdir/keyward-unlock.new.$$" "$destdir$libdir/keyward-unlock"
echo "installed $libdir/keyward-unlock"
put 0644 "$here/systemd/keywardd.service" "$unitdir/keywardd.service"
put 0644 "$here/systemd/keyward-refresh.service" "$unitdir/keyward-refresh.service"
put 0644 "$here/systemd/keyward-refresh.timer" "$unitdir/keyward-refresh.timer"
put 0755 "$here/keyscript/keyward-keyscript" "$libdir/keyward-keyscript"
put 0755 "$here/initramfs-tools/hooks/keyward" "$itdir/hooks/keyward"
put 0755 "$here/initramfs-tools/scripts/init-bottom/keyward" "$itdir/scripts/init-bottom/keyward"
put 0644 "$here/keyward.toml.example" "$docdir/keyward.toml.example"
for d in boot.md operations.md; do
	if [ -f "$repo/docs/$d" ]; then
		put 0644 "$repo/docs/$d" "$docdir/$d"
	fi
done

mkdir -p "$destdir$confdir"
chmod 0700 "$destdir$confdir"
if [ -e "$destdir$confdir/keyward.toml" ]; then
	echo "kept     $confdir/keyward.toml (example in $docdir)"
else
	put 0644 "$here/keyward.toml.example" "$confdir/keyward.toml"
fi

if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload
fi

if [ -z "$destdir" ]; then
	cat <<EOF

Next (see $docdir/boot.md):
  keyward init [--mesh NAME]       # before the first start of keywardd
  systemctl enable --now keywardd
  keyward join TOKEN               # on nodes joining an existing mesh
  keyward bind --device /dev/sdX2
  # crypttab: keyscript=$libdir/keyward-keyscript,initramfs
  update-initramfs -u
EOF
fi
