#!/bin/sh
# Exercises dist/keyscript/keyward-keyscript with a fake keyward-unlock,
# askpass and configure_networking: key bytes on stdout untouched (NUL,
# newline), the prompt within 2 s whatever the mesh does, each refusal
# printed once, a late key from the mesh ending the prompt through the
# fifo, addresses from keyward.guardians= on the kernel command line, no
# retry of a key cryptsetup rejected, no leftover processes.
#   dist/test-keyscript.sh                       # with /bin/sh
#   KS_SHELL="busybox sh" dist/test-keyscript.sh # as in the initramfs

set -eu

here=$(cd "$(dirname "$0")" && pwd)
ks="$here/keyscript/keyward-keyscript"
# The initramfs runs keyscripts with busybox sh: KS_SHELL="busybox sh".
KS_SHELL="${KS_SHELL:-sh}"
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

# 32 key bytes including NUL and newline.
printf 'k\000e\ny0123456789abcdef0123456789abc' >"$tmp/key"

# Fake keyward-unlock: succeeds on call number $FAKE_OK (0: never), after
# $FAKE_DELAY seconds; prints a refusal at once unless --quiet, as the real
# one prints each as it arrives. Logs its arguments and pid.
cat >"$tmp/keyward" <<'EOF'
#!/bin/sh
n=$(($(cat "$T/calls" 2>/dev/null || echo 0) + 1))
echo "$n" >"$T/calls"
echo "$*" >>"$T/args"
echo $$ >>"$T/pids"
case " $* " in
*" --quiet "*) ;;
*) echo "keyward: guardian node1 at /ip4/192.0.2.1/tcp/7300 refused: not seen alive for 2 h, timeout 5 min; ask an admin: keyward approve web1" >&2 ;;
esac
sleep "${FAKE_DELAY:-0}"
if [ "$n" = "${FAKE_OK:-0}" ]; then
	cat "$T/key"
	exit 0
fi
echo "keyward: 0 valid shares of 2 needed; 2 guardians unreachable" >&2
exit "${FAKE_RC:-1}"
EOF

# Fake askpass: makes the fifo like the real one; returns typed input
# ($FAKE_TYPED, after a second) or whatever is written to the fifo.
cat >"$tmp/askpass" <<'EOF'
#!/bin/sh
echo "askpass: $1" >>"$T/prompts"
date +%s%N >"$T/prompt-at"
mkfifo "$PASSFIFO" 2>/dev/null || true
if [ -n "${FAKE_TYPED:-}" ]; then
	sleep 1
	printf '%s' "$FAKE_TYPED"
else
	cat "$PASSFIFO"
fi
EOF

# Fake initramfs functions: configure_networking prints to stdout (as
# ipconfig does) and leaves a net-eth0.conf.
cat >"$tmp/functions" <<'EOF'
configure_networking() {
	echo "IP-Config: eth0 complete"
	echo "DEVICE=eth0" >"$NETCONF_DIR/net-eth0.conf"
}
EOF
chmod 755 "$tmp/keyward" "$tmp/askpass"

# run NAME TRIED: runs the keyscript for a fresh case directory.
run() {
	T="$tmp/$1"
	mkdir -p "$T/run"
	cp "$tmp/key" "$T/key"
	export T
	date +%s%N >"$T/start-at"
	CRYPTTAB_TRIED="$2" CRYPTTAB_SOURCE=/dev/vda2 CRYPTTAB_NAME=vda2_crypt \
		KEYWARD="$tmp/keyward" ASKPASS="$tmp/askpass" PASSFIFO="$T/passfifo" \
		INITRAMFS_FUNCTIONS="$tmp/functions" NETCONF_DIR="$T/run" \
		STATE_DIR="${STATE:-$T/state}" KEY_TMP="$T/key.tmp" TYPED_TMP="$T/typed.tmp" \
		CMDLINE="${CMDLINE:-$tmp/no-cmdline}" KEYWARD_RETRY_PAUSE=1 \
		KEYWARD_PROMPT_DELAY="${DELAY:-0}" \
		$KS_SHELL "$ks" >"$T/out" 2>"$T/err" </dev/null
}

calls() { cat "$T/calls" 2>/dev/null || echo 0; }

# Milliseconds from the keyscript's start to the prompt.
prompt_ms() {
	echo $((($(cat "$T/prompt-at") - $(cat "$T/start-at")) / 1000000))
}

no_leftovers() {
	sleep 1
	while read -r p; do
		if kill -0 "$p" 2>/dev/null; then
			bad "$1: keyward $p still running"
			kill "$p" 2>/dev/null || true
			return
		fi
	done <"$T/pids"
	if [ -e "$T/key.tmp" ] || [ -e "$T/typed.tmp" ]; then bad "$1: key left in $T"; else ok "$1: nothing left behind"; fi
}

# 1. The mesh answers within KEYWARD_PROMPT_DELAY: the key goes straight
#    to stdout, no prompt.
DELAY=1 FAKE_OK=1 run mesh 0
check "mesh: exact key on stdout" cmp -s "$T/out" "$T/key"
check "mesh: no prompt" test ! -e "$T/prompts"
check "mesh: keyward arguments" grep -qx -- \
	"--device /dev/vda2 --print-key --timeout 60s" "$T/args"
check "mesh: network output went to stderr" grep -q "IP-Config" "$T/err"
check "mesh: configured interface recorded" grep -qx "$T/run/net-eth0.conf" "$T/state/net"
no_leftovers mesh

# 2. The mesh hangs: the prompt is up within 2 s anyway, and the admin
#    types the passphrase while keyward is still asking.
FAKE_OK=0 FAKE_DELAY=10 FAKE_TYPED=secret run typed 0
check "typed: passphrase on stdout" test "$(cat "$T/out")" = secret
check "typed: askpass prompt" grep -q "Please unlock disk vda2_crypt: " "$T/prompts"
check "typed: prompt within 2 s of the keyscript ($(prompt_ms) ms)" test "$(prompt_ms)" -lt 2000
check "typed: the refusal reached the console" grep -q "refused: not seen alive" "$T/err"
no_leftovers typed

# 3. No mesh at first; an approve lets a later attempt succeed: the key
#    ends the prompt through the fifo and the keyscript prints it. The
#    refusal is printed once,
#    not once per attempt.
FAKE_OK=3 run late 0
check "late: key delivered after the prompt" cmp -s "$T/out" "$T/key"
check "late: three keyward calls" test "$(calls)" = 3
check "late: refusal printed once" test "$(grep -c "refused:" "$T/err")" = 1
check "late: first attempt says no wait" grep -qx -- \
	"--device /dev/vda2 --print-key --timeout 60s" "$T/args"
check "late: later attempts say how long this boot waited" grep -Eqx -- \
	"--device /dev/vda2 --print-key --timeout 60s --quiet --waited [0-9]+s" "$T/args"
check "late: prompt within 2 s ($(prompt_ms) ms)" test "$(prompt_ms)" -lt 2000
no_leftovers late

# 4. The key from the mesh was rejected: the next try only prompts.
STATE="$tmp/rejected-state"
FAKE_OK=1 run rejected 0
FAKE_OK=1 FAKE_TYPED=secret run rejected 1
check "rejected: prompt only" test "$(cat "$T/out")" = secret
check "rejected: mesh not asked again" test "$(calls)" = 1
unset STATE

# 5. A later try (wrong passphrase before) still lets the mesh answer.
FAKE_OK=1 run retry 1
check "retry: key delivered" cmp -s "$T/out" "$T/key"
check "retry: network not touched again" test ! -e "$T/run/net-eth0.conf"
no_leftovers retry

# 6. The mesh says it will never give the key (exit 3: revoked, wrong
#    boot key): prompt at once, no background asking.
FAKE_RC=3 FAKE_TYPED=secret run hopeless 0
check "hopeless: passphrase on stdout" test "$(cat "$T/out")" = secret
check "hopeless: mesh asked once" test "$(calls)" = 1
check "hopeless: prompt within 2 s ($(prompt_ms) ms)" test "$(prompt_ms)" -lt 2000
no_leftovers hopeless

# 7. Guardian addresses from the kernel command line.
printf 'BOOT_IMAGE=/vmlinuz ro keyward.guardians=192.0.2.7:7300,[2001:db8::7]:7300 quiet\n' >"$tmp/kernel-cmdline"
CMDLINE="$tmp/kernel-cmdline" DELAY=1 FAKE_OK=1 run cmdline 0
check "cmdline: --guardian per address" grep -qx -- \
	"--device /dev/vda2 --print-key --timeout 60s --guardian 192.0.2.7:7300 --guardian \[2001:db8::7\]:7300" "$T/args"
check "cmdline: key on stdout" cmp -s "$T/out" "$T/key"

# 8. The init-bottom script at least parses.
check "init-bottom parses" sh -n "$here/initramfs-tools/scripts/init-bottom/keyward"

if [ "$fails" -eq 0 ]; then
	echo "all keyscript checks passed"
else
	echo "$fails keyscript checks failed"
	exit 1
fi
