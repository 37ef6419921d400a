#!/bin/sh
# `openlm tokenizer encode|decode|info` on the committed GPT-NeoX-layout asset (no Python):
# the whole stdin on one line, --lines, --nul, decode, --skip-special-tokens, the old --model form,
# invalid UTF-8 (replaced, with a note on stderr) and a refused tokenizer.json.
set -eu
openlm=$1
asset=$2/tests/tokenizer/data/neox_tiny_tokenizer.json
work=$3
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
check() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }

check "encode" "$(printf 'Hello world' | "$openlm" tokenizer encode --tokenizer "$asset")" "281 267"
check "encode keeps newlines" "$(printf 'Hello world\n\n\n x' | "$openlm" tokenizer encode --tokenizer "$asset")" "281 267 277 12 34 122"
check "encode --lines" "$(printf 'Hello world\n<|endoftext|>Hello<|endoftext|>\n' | "$openlm" tokenizer encode --tokenizer "$asset" --lines | tr '\n' '|')" "281 267|0 281 0|"
check "encode --nul" "$(printf 'a\nb\0Hello\0' | "$openlm" tokenizer encode --tokenizer "$asset" --nul | tr '\n' '|')" "99 12 100|281|"
check "old form" "$("$openlm" tokenizer encode --model "$asset" "Hello world")" "281 267"
check "directory" "$(mkdir -p "$work/dir" && cp "$asset" "$work/dir/tokenizer.json" && printf 'Hello' | "$openlm" tokenizer encode --tokenizer "$work/dir")" "281"
check "decode" "$(echo '281 267 0' | "$openlm" tokenizer decode --tokenizer "$asset")" "Hello world<|endoftext|>"
check "decode --skip-special-tokens" "$(echo '281 267 0' | "$openlm" tokenizer decode --tokenizer "$asset" --skip-special-tokens)" "Hello world"
check "decode --lines" "$(printf '281\n267\n' | "$openlm" tokenizer decode --tokenizer "$asset" --lines | tr '\n' '|')" "Hello| world|"
printf 'caf\303\251 \360\237\230\200 it'"'"'s  12345\n\tx' > "$work/text"
"$openlm" tokenizer encode --tokenizer "$asset" < "$work/text" | "$openlm" tokenizer decode --tokenizer "$asset" > "$work/back"
cmp "$work/text" "$work/back" || fail "decode(encode(x)) != x"
check "invalid UTF-8" "$(printf 'Hello world\377' | "$openlm" tokenizer encode --tokenizer "$asset" 2> "$work/err")" "281 267 241 193 191"
grep -q "U+FFFD" "$work/err" || fail "no note about invalid UTF-8 on stderr"
"$openlm" tokenizer info --tokenizer "$asset" --json | grep -q '"eos_id":0' || fail "info"
sed 's/"type": "NFC"/"type": "Lowercase"/' "$asset" > "$work/bad.json"
if printf 'x' | "$openlm" tokenizer encode --tokenizer "$work/bad.json" 2> "$work/err2"; then fail "a Lowercase normalizer was accepted"; fi
grep -q 'normalizer.type = "Lowercase"' "$work/err2" || fail "refusal does not name the part: $(cat "$work/err2")"
echo "PASS"
