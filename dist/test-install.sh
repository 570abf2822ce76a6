#!/bin/sh
# Runs dist/install.sh into temporary DESTDIRs with stub binaries and checks
# what it installed: paths, modes, config preservation, --prefix rewriting.
# Also lints the shell scripts (shellcheck) and the unit (systemd-analyze)
# when those tools are installed.

set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fails=0

ok() { echo "ok   $*"; }
bad() {
	echo "FAIL $*"
	fails=$((fails + 1))
}

# check DESCRIPTION COMMAND...: ok if COMMAND succeeds.
check() {
	what="$1"
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}

# expect_mode DESTDIR PATH MODE
expect_mode() {
	if [ ! -f "$1$2" ]; then
		bad "$2 missing"
		return
	fi
	m=$(stat -c %a "$1$2")
	if [ "$m" = "$3" ]; then ok "$2 $m"; else bad "$2 has mode $m, want $3"; fi
}

mkdir -p "$tmp/target"
for b in keyward keywardd keyward-unlock; do
	printf '#!/bin/sh\necho %s\n' "$b" >"$tmp/target/$b"
	chmod 755 "$tmp/target/$b"
done

# 1. Default prefix.
root="$tmp/root"
"$here/install.sh" --destdir "$root" --target "$tmp/target" >"$tmp/log1"
expect_mode "$root" /usr/bin/keyward 755
expect_mode "$root" /usr/bin/keywardd 755
expect_mode "$root" /usr/lib/systemd/system/keywardd.service 644
expect_mode "$root" /usr/lib/systemd/system/keyward-refresh.service 644
expect_mode "$root" /usr/lib/systemd/system/keyward-refresh.timer 644
expect_mode "$root" /usr/lib/keyward/keyward-keyscript 755
expect_mode "$root" /usr/lib/keyward/keyward-unlock 755
expect_mode "$root" /usr/share/initramfs-tools/hooks/keyward 755
expect_mode "$root" /usr/share/initramfs-tools/scripts/init-bottom/keyward 755
expect_mode "$root" /usr/share/doc/keyward/keyward.toml.example 644
expect_mode "$root" /etc/keyward/keyward.toml 644
d=$(stat -c %a "$root/etc/keyward")
if [ "$d" = 700 ]; then ok "/etc/keyward $d"; else bad "/etc/keyward has mode $d, want 700"; fi
if grep -q '^ExecStart=/usr/bin/keywardd --config /etc/keyward/keyward.toml$' \
	"$root/usr/lib/systemd/system/keywardd.service"; then
	ok "unit ExecStart"
else
	bad "unit ExecStart"
fi
if cmp -s "$here/keyward.toml.example" "$root/etc/keyward/keyward.toml"; then
	ok "config installed from the example"
else
	bad "config differs from the example"
fi

# 2. A second run keeps an existing config.
echo 'name = "web1"' >"$root/etc/keyward/keyward.toml"
"$here/install.sh" --destdir "$root" --target "$tmp/target" >"$tmp/log2"
if [ "$(cat "$root/etc/keyward/keyward.toml")" = 'name = "web1"' ]; then
	ok "existing config kept"
else
	bad "existing config overwritten"
fi
check "kept reported" grep -q '^kept ' "$tmp/log2"

# 3. DESTDIR from the environment and --prefix=/usr/local.
root2="$tmp/root2"
DESTDIR="$root2" "$here/install.sh" --prefix=/usr/local --target "$tmp/target" >"$tmp/log3"
expect_mode "$root2" /usr/local/bin/keyward 755
expect_mode "$root2" /usr/local/lib/keyward/keyward-keyscript 755
expect_mode "$root2" /usr/local/lib/systemd/system/keywardd.service 644
expect_mode "$root2" /usr/share/initramfs-tools/hooks/keyward 755
check "prefix in unit" grep -q '^ExecStart=/usr/local/bin/keywardd ' \
	"$root2/usr/local/lib/systemd/system/keywardd.service"
# shellcheck disable=SC2016 # a literal ${...}
check "prefix in keyscript" grep -qF 'KEYWARD="${KEYWARD:-/usr/local/lib/keyward/keyward-unlock}"' \
	"$root2/usr/local/lib/keyward/keyward-keyscript"
# shellcheck disable=SC2016 # a literal ${...}
check "prefix in hook" grep -qF 'UNLOCK="${KEYWARD_UNLOCK:-/usr/local/lib/keyward/keyward-unlock}"' \
	"$root2/usr/share/initramfs-tools/hooks/keyward"
if [ -e "$root2/usr/bin/keyward" ]; then bad "/usr/bin/keyward installed with --prefix /usr/local"; fi

# 4. Refusals.
if "$here/install.sh" --destdir "$tmp/x" --target "$tmp/nothing" >/dev/null 2>&1; then
	bad "install without binaries succeeded"
else
	ok "install without binaries refused"
fi
if "$here/install.sh" --prefix relative --destdir "$tmp/x" --target "$tmp/target" >/dev/null 2>&1; then
	bad "relative prefix accepted"
else
	ok "relative prefix refused"
fi

# 5. The example config is valid TOML once uncommented.
if command -v python3 >/dev/null 2>&1 && python3 -c 'import tomllib' 2>/dev/null; then
	if python3 - "$here/keyward.toml.example" <<'EOF'; then ok "example config parses (commented and uncommented)"; else bad "example config does not parse"; fi
import re, sys, tomllib
text = open(sys.argv[1]).read()
tomllib.loads(text)
# Uncomment `#key = value` lines: the defaults must parse too.
on = re.sub(r"(?m)^#([a-z_.]+ = )", r"\1", text)
c = tomllib.loads(on)
want = {"name", "state_dir", "boot_key", "control_socket", "listen",
        "bootstrap", "mdns", "quic", "log_level", "address_max_age", "policy",
        "logs"}
assert set(c) == want, set(c) ^ want
p = {"interval": 120, "timeout": 300, "extended_timeout": 900,
     "approval_delay": 0, "approval_window": 3600, "up_window": 10,
     "approvals": 1}
assert c["policy"] == p, c["policy"]
EOF
else
	echo "skip example config check (python3 with tomllib not available)"
fi

# 6. Linters.
if command -v shellcheck >/dev/null 2>&1; then
	if shellcheck -s sh "$here/install.sh" "$here/test-install.sh" \
		"$here/keyscript/keyward-keyscript" "$here/initramfs-tools/hooks/keyward" \
		"$here/initramfs-tools/scripts/init-bottom/keyward"; then
		ok "shellcheck"
	else
		bad "shellcheck"
	fi
else
	echo "skip shellcheck (not installed)"
fi
if command -v systemd-analyze >/dev/null 2>&1 && [ -d /usr/lib/systemd/system ]; then
	# verify needs the targets the unit names and its ExecStart inside --root.
	mkdir -p "$root/usr/lib/systemd"
	cp -a /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
	if systemd-analyze verify --root="$root" /usr/lib/systemd/system/keywardd.service; then
		ok "systemd-analyze verify"
	else
		bad "systemd-analyze verify"
	fi
else
	echo "skip systemd-analyze verify (not installed)"
fi

if [ "$fails" -eq 0 ]; then
	echo "all install checks passed"
else
	echo "$fails install checks failed"
	exit 1
fi
