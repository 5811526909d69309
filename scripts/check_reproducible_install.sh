#!/usr/bin/env bash
# Installs the lock twice into new venvs, GAP seconds apart (60 by default), with the same
# recipe as `make install`, and compares what each got: `pip freeze --all`, and the SHA-256 that
# pip recorded for every file it installed into site-packages (the console scripts in bin/ name
# their venv's path, so they are left out). Prints the verdict last; exits 1 if they differ.
#   bash scripts/check_reproducible_install.sh        GAP=5 bash scripts/check_reproducible_install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GAP="${GAP:-60}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

install_into() {
    local venv="$work/$1"
    if ! make --no-print-directory VENV="$venv" "$venv/.installed" >"$venv.log" 2>&1; then
        cat "$venv.log"
        echo "install $1 failed"
        exit 1
    fi
    "$venv/bin/python" -m pip freeze --all >"$venv.freeze"
    (cd "$venv"/lib/python3*/site-packages && cat ./*.dist-info/RECORD) \
        | grep -v '^\.\./' | cut -d, -f1,2 | sort >"$venv.files"
    echo "install $1: $(grep -vc '^#' "$venv.freeze") packages, $(wc -l <"$venv.files") files"
}

install_into first
echo "waiting ${GAP}s"
sleep "$GAP"
install_into second

if diff -u "$work/first.freeze" "$work/second.freeze" && diff -u "$work/first.files" "$work/second.files"; then
    echo "reproducible: identical installs, ${GAP}s apart: $(grep -vc '^#' "$work/first.freeze") packages"
else
    echo "NOT reproducible: the installs above differ"
    exit 1
fi
