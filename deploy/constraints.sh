#!/usr/bin/env bash
# Rewrites deploy/constraints.txt: every package `pip install '.[gpu]'` resolves to (the `gpu` extra
# includes `server`), at the version the development environment (.venv, where the tests run) has,
# else the newest that fits. Run it after changing pyproject.toml's dependencies, then deploy/build.sh:
# the image build fails, naming the packages, when constraints.txt lacks one.
# Usage: deploy/constraints.sh [VENV]   (VENV defaults to .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
work=$(mktemp -d /tmp/lookalike-constraints.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$venv/bin/python" -m pip freeze --exclude-editable | grep -v '^-e ' > "$work/dev.txt"
python3 -m venv "$work/pip"
"$work/pip/bin/pip" install --quiet --upgrade pip
"$work/pip/bin/pip" install --quiet --dry-run --ignore-installed --constraint "$work/dev.txt" \
    --report "$work/report.json" '.[gpu]'
{
    cat <<'HEADER'
# Every package the images install, pinned: what `pip install '.[gpu]'` resolves to (the `gpu` extra
# includes `server`), at the versions of the development environment the tests run in. The images
# install the lines not starting with nvidia- (the `server` extra) and, for encoder-gpu, all of them.
# Written by deploy/constraints.sh: run it after a change to pyproject.toml's dependencies.
HEADER
    python3 -c '
import json, sys
report = json.load(open(sys.argv[1]))
pins = sorted((p["metadata"]["name"], p["metadata"]["version"]) for p in report["install"])
print("".join(f"{name}=={version}\n" for name, version in pins if name != "lookalike"), end="")
' "$work/report.json"
} > deploy/constraints.txt
echo "wrote deploy/constraints.txt: $(grep -cv '^#' deploy/constraints.txt) packages"
