#!/usr/bin/env bash
# Run `ansible-test sanity` offline.
#
# ansible-test builds a venv per sanity test and bootstraps pip into each with get-pip.py,
# downloaded from a host outside the package registries: its cache is pre-seeded with an
# offline stand-in (scripts/get_pip_offline.py), so the pinned sanity requirements come
# from PyPI alone. ansible-test runs --local from the project venv.
# ansible-test needs the collection under ansible_collections/<ns>/<name>: the tracked
# and untracked-but-not-ignored files are copied to such a tree in the cache directory.
# Usage: scripts/sanity.sh [extra ansible-test sanity arguments]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
venv="$top/.venv"
cache="${LLAMACPP_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamacpp-cluster}"
tree="$cache/ansible-test/ansible_collections/llamacpp/cluster"
pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

die() { printf 'sanity: error: %s\n' "$*" >&2; exit 1; }

[ -x "$venv/bin/ansible-test" ] || die "$venv has no ansible-test; fix: run 'make venv'"

# Pre-seed ansible-test's pip bootstrap cache with the offline stand-in for get-pip.py.
at_root=$("$venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_ver=$(grep -oE "pip='[0-9.]+'" "$at_root/_internal/python_requirements.py" | head -n1 | tr -dc '0-9.')
[ -n "$pip_ver" ] || die "cannot find the pip version ansible-test bootstraps; check $at_root"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_ver//./_}.py"
if [ ! -f "$get_pip" ]; then
  mkdir -p "$(dirname "$get_pip")"
  cp "$top/scripts/get_pip_offline.py" "$get_pip"
fi

rm -rf "$tree"
mkdir -p "$tree"
(cd "$top" && git ls-files -z --cached --others --exclude-standard \
  | grep -zv '^collections/' \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf -) | tar -C "$tree" -xf -

cd "$tree"
export PATH="$venv/bin:$PATH"
exec ansible-test sanity --local --python "$pyver" --color no "$@"
