#!/usr/bin/env bash
# Lint, for CI: exits non-zero on any finding.
#   1. clang-format --dry-run --Werror on every tracked .cpp/.hpp (.clang-format).
#   2. clang-tidy (.clang-tidy: its checks, every finding an error, the project's headers
#      through HeaderFilterRegex) on every translation unit of compile_commands.json under
#      app/, webstack/, common/ and tests/, in parallel.
# Prints each finding once (a header's finding is reported by every file that includes
# it), then a summary: findings by check, the slowest files, the time of each pass.
#
# clang-tidy costs about 7 CPU-minutes for the whole tree (most of it Boost/Beast's
# headers, parsed again for every file), so its results are cached: a translation unit
# is checked again only when its key changed: clang-tidy's version, the .clang-tidy files,
# LINT_CHECKS, its compile command and the content of every file it includes (listed by
# clang-scan-deps, a few seconds for the whole tree).
#
# Usage: scripts/lint.sh [build-dir]   (default build/release)
#   The build dir needs only its compile_commands.json (`cmake --preset release`), no
#   build: no source includes a generated file.
# Environment:
#   LINT_JOBS=N        clang-tidy processes at once (default: nproc)
#   LINT_CHECKS=GLOBS  appended to .clang-tidy's Checks, e.g. LINT_CHECKS='clang-analyzer-*'
#                      (the path-sensitive analyzer, not run by default: see .clang-tidy)
#   LINT_CACHE=DIR     the results cache (default <build-dir>/lint-cache; entries unused
#                      for 30 days are removed); LINT_CACHE=off checks every file
#   LINT_SKIP_FORMAT=1 / LINT_SKIP_TIDY=1   one pass only
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

build=${1:-build/release}
db=$build/compile_commands.json
jobs=${LINT_JOBS:-$(nproc)}
cache=${LINT_CACHE:-$build/lint-cache}
if [ -z "${LINT_SKIP_TIDY:-}" ] && [ ! -f "$db" ]; then
  echo "lint: no $db; configure first: cmake --preset release" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
summary=()
failed=0

# --- clang-format -----------------------------------------------------------------------
if [ -z "${LINT_SKIP_FORMAT:-}" ]; then
  echo "== clang-format"
  t0=$(date +%s)
  git ls-files -z -- '*.cpp' '*.hpp' >"$tmp/format-files"
  nfiles=$(tr -cd '\0' <"$tmp/format-files" | wc -c)
  rc=0
  xargs -0 -r clang-format --dry-run --Werror <"$tmp/format-files" 2>"$tmp/format.log" || rc=$?
  # One line per place clang-format would change (its excerpts of the code are left out).
  grep -E ': error: ' "$tmp/format.log" | sed 's/: error: code should be clang-formatted.*//' \
    >"$tmp/format-findings" || true
  nbad=$(cut -d: -f1 "$tmp/format-findings" | sort -u | wc -l)
  if [ "$rc" != 0 ]; then
    cat "$tmp/format-findings"
    # Anything else clang-format said (a file it could not read, a bad .clang-format).
    grep -E '(error|warning):' "$tmp/format.log" | grep -v 'code should be clang-formatted' || true
    echo "clang-format: fix with: clang-format -i $(cut -d: -f1 "$tmp/format-findings" |
      sort -u | tr '\n' ' ')"
    failed=1
  fi
  summary+=("$(printf 'clang-format: %d files, %d not formatted (%d places), %d s' \
    "$nfiles" "$nbad" "$(wc -l <"$tmp/format-findings")" $(($(date +%s) - t0)))")
fi

# --- clang-tidy ---------------------------------------------------------------------------
if [ -z "${LINT_SKIP_TIDY:-}" ]; then
  echo "== clang-tidy ($jobs at once)"
  t0=$(date +%s)
  mkdir "$tmp/tidy" "$tmp/keys"
  # <n> <file>, one line per translation unit.
  jq -r '.[].file' "$db" | grep -E "^$root/(app|webstack|common|tests)/.*\.cpp$" | sort -u |
    nl -ba -nln -w1 -s' ' >"$tmp/tidy-files"
  ntu=$(wc -l <"$tmp/tidy-files")

  # The cache key of each translation unit: <n>.key.
  if [ "$cache" != off ]; then
    tidy_bin=$(readlink -f "$(command -v clang-tidy)")
    scan=$(dirname "$tidy_bin")/clang-scan-deps
    [ -x "$scan" ] || scan=$(command -v clang-scan-deps || true)
    if [ -z "$scan" ] ||
      ! "$scan" -compilation-database="$db" -j "$jobs" >"$tmp/deps.mk" 2>"$tmp/deps.err"; then
      echo "lint: clang-scan-deps failed, checking every file (no cache):" >&2
      cat "$tmp/deps.err" >&2
      cache=off
    fi
  fi
  if [ "$cache" != off ]; then
    mkdir -p "$cache"
    # What every key shares.
    {
      clang-tidy --version
      echo "root $root" "checks ${LINT_CHECKS:-}"
      git ls-files -z -- '.clang-tidy' '*/.clang-tidy' | xargs -0 -r sha256sum
    } >"$tmp/key-common"
    # <source> <dependency> pairs (the source is the rule's first prerequisite), and the
    # content hash of every dependency.
    awk '{ line = $0; cont = sub(/\\$/, "", line); buf = buf " " line
           if (cont) next
           n = split(buf, a, /[ \t]+/); target = 0; src = ""
           for (i = 1; i <= n; i++) {
             if (a[i] == "") continue
             if (!target) { if (a[i] ~ /:$/) target = 1; continue }
             if (src == "") src = a[i]
             print src, a[i]
           }
           buf = "" }' "$tmp/deps.mk" | sort -u >"$tmp/deps"
    cut -d' ' -f2 "$tmp/deps" | sort -u | xargs -r sha256sum >"$tmp/dep-hashes" 2>/dev/null ||
      true
    jq -r '.[] | "\(.file) \(.directory) \(.command // (.arguments | join(" ")))"' "$db" |
      sort >"$tmp/commands"
    while read -r n f; do
      {
        cat "$tmp/key-common"
        awk -v f="$f" '$1 == f' "$tmp/commands"
        awk -v f="$f" '$1 == f { print $2 }' "$tmp/deps" |
          awk 'NR == FNR { want[$0] = 1; next } ($2 in want)' - "$tmp/dep-hashes"
      } | sha256sum | cut -d' ' -f1 >"$tmp/keys/$n.key"
    done <"$tmp/tidy-files"
  fi

  # The translation units to check: those without a cached result.
  : >"$tmp/tidy-todo"
  ncached=0
  while read -r n f; do
    if [ "$cache" != off ]; then
      key=$(cat "$tmp/keys/$n.key")
      if [ -f "$cache/$key.rc" ] && [ -f "$cache/$key.out" ]; then
        cp "$cache/$key.out" "$tmp/tidy/$n.out"
        : >"$tmp/tidy/$n.err"
        echo "$(cut -d' ' -f1 "$cache/$key.rc") cached" >"$tmp/tidy/$n.rc"
        touch "$cache/$key.rc" "$cache/$key.out"
        ncached=$((ncached + 1))
        continue
      fi
    fi
    echo "$n $f" >>"$tmp/tidy-todo"
  done <"$tmp/tidy-files"

  # One clang-tidy per translation unit: <n>.out (the diagnostics), <n>.err (clang-tidy's
  # own messages), <n>.rc (its exit status and wall time in seconds).
  export build tmp LINT_CHECKS
  # shellcheck disable=SC2016  # expanded by the inner bash
  xargs -r -P "$jobs" -L 1 bash -c '
      n=$0 f=$1 rc=0 t=$SECONDS
      clang-tidy --quiet -p "$build" ${LINT_CHECKS:+--checks="$LINT_CHECKS"} "$f" \
        >"$tmp/tidy/$n.out" 2>"$tmp/tidy/$n.err" || rc=$?
      echo "$rc $((SECONDS - t))" >"$tmp/tidy/$n.rc"' <"$tmp/tidy-todo"

  # Into the cache: the results of clang-tidy runs that ended (0: clean, 1: findings).
  if [ "$cache" != off ]; then
    while read -r n f; do
      read -r rc secs <"$tmp/tidy/$n.rc"
      [ "$rc" = 0 ] || [ "$rc" = 1 ] || continue
      key=$(cat "$tmp/keys/$n.key")
      cp "$tmp/tidy/$n.out" "$cache/$key.out.tmp" && mv "$cache/$key.out.tmp" "$cache/$key.out"
      echo "$rc $secs" >"$cache/$key.rc"
    done <"$tmp/tidy-todo"
    find "$cache" -type f -mtime +30 -delete
  fi

  # Each diagnostic (its line, the code excerpt and notes after it) once, in file order.
  find "$tmp/tidy" -name '*.out' -print0 | sort -zV | xargs -0 cat |
    awk -v root="$root/" '
      /^\/.*:[0-9]+:[0-9]+: (warning|error): / { key = $0; show = !(key in seen); seen[key] = 1 }
      { if (show) {
          while ((i = index($0, root)) > 0) $0 = substr($0, 1, i - 1) substr($0, i + length(root))
          print } }' >"$tmp/tidy-findings"
  # file:line:col: error: message [check,-warnings-as-errors]
  grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' "$tmp/tidy-findings" >"$tmp/tidy-list" || true
  nfind=$(wc -l <"$tmp/tidy-list")
  # Translation units clang-tidy failed on without a finding to show (a compile error
  # outside the header filter, a crash), and the time of those checked now.
  : >"$tmp/tidy-broken"
  : >"$tmp/tidy-times"
  while read -r n f; do
    read -r rc secs <"$tmp/tidy/$n.rc"
    [ "$secs" = cached ] || echo "$secs ${f#"$root"/}" >>"$tmp/tidy-times"
    if [ "$rc" != 0 ] && ! [ -s "$tmp/tidy/$n.out" ]; then
      echo "${f#"$root"/} (exit $rc)" >>"$tmp/tidy-broken"
      sed 's/^/    /' "$tmp/tidy/$n.err" >>"$tmp/tidy-broken"
    fi
  done <"$tmp/tidy-files"
  if [ "$nfind" -gt 0 ]; then
    cat "$tmp/tidy-findings"
    echo "== clang-tidy findings by check"
    sed -E 's/.*\[([^],]*)[],].*/\1/' "$tmp/tidy-list" | sort | uniq -c | sort -rn
    failed=1
  fi
  if [ -s "$tmp/tidy-broken" ]; then
    echo "== clang-tidy failed on (no finding shown)"
    cat "$tmp/tidy-broken"
    failed=1
  fi
  if [ -s "$tmp/tidy-times" ]; then
    echo "== clang-tidy: the slowest translation units (s)"
    sort -rn "$tmp/tidy-times" | head -5
  fi
  summary+=("$(printf 'clang-tidy: %d translation units (%d from the cache), %d findings, %d failed, %d s' \
    "$ntu" "$ncached" "$nfind" "$(grep -c '(exit ' "$tmp/tidy-broken" || true)" \
    $(($(date +%s) - t0)))")
fi

echo "== lint"
printf '%s\n' "${summary[@]}"
[ "$failed" = 0 ] && echo "lint: ok" || echo "lint: FAILED"
exit "$failed"
