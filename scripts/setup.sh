#!/usr/bin/env bash
# Make this machine ready for vixen-assets, idempotently:
#   1. system packages: Mesa lavapipe >= 25 from Debian bookworm-backports (acceleration structures, ray query),
#      the Khronos validation layer, glslang and SPIR-V tools;
#      and Debian's chromium (the HTML report's browser test);
#   2. a virtualenv in .venv with vixen-assets (editable, with its test, basis, cluster and omniverse extras)
#      and every plugin under plugins/;
#   3. a second one in .venv-blender with the same plus bpy (it pins numpy < 2) for the Blender plugin.
# As root it installs directly; otherwise it uses sudo when present, else prints the exact commands and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VIXEN_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

need_system() {
  command -v glslangValidator >/dev/null 2>&1 || return 0
  dpkg -s vulkan-validationlayers >/dev/null 2>&1 || return 0
  dpkg -s spirv-tools >/dev/null 2>&1 || return 0
  command -v chromium >/dev/null 2>&1 || return 0
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] || return 0
  dpkg --compare-versions "$v" ge 25 || return 0
  return 1
}

system_commands() {
  cat <<'CMDS'
if [ ! -f /etc/apt/sources.list.d/bookworm-backports.sources ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    awk 'BEGIN{RS="";ORS="\n\n"} NR==1' /etc/apt/sources.list.d/debian.sources | sed -e 's/^Suites:.*/Suites: bookworm-backports/' -e '/^#/d' > /etc/apt/sources.list.d/bookworm-backports.sources
  else
    grep -m1 -E '^deb .* bookworm ' /etc/apt/sources.list | sed -e 's/ bookworm / bookworm-backports /' > /etc/apt/sources.list.d/bookworm-backports.list
  fi
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers vulkan-tools
apt-get install -y -q vulkan-validationlayers glslang-tools spirv-tools python3-venv
# the HTML validation report is tested in a real headless browser (Playwright drives this binary; no download)
apt-get install -y -q chromium
CMDS
}

if need_system; then
  echo "setup: installing Mesa lavapipe (bookworm-backports), validation layers, glslang and chromium" >&2
  if [ "$(id -u)" = 0 ]; then
    bash -c "$(system_commands)"
  elif command -v sudo >/dev/null 2>&1; then
    sudo bash -c "$(system_commands)"
  else
    echo "setup: not root and no sudo. Run these commands as root, then run 'make setup' again:" >&2
    system_commands >&2
    exit 1
  fi
fi

# Python environments: reinstall only when a project file changed.
want=$(cat pyproject.toml plugins/*/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)

# 1. .venv: vixen-assets (editable; test, basis, cluster and omniverse extras) and every plugin under plugins/ (numpy 2).
stamp="$VENV/.vixen-setup-stamp"
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; }; then
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  args=(-e "$ROOT[test,basis,cluster,omniverse]")
  for p in plugins/*/; do
    [ -f "$p/pyproject.toml" ] && args+=(-e "$ROOT/$p")
  done
  "$VENV/bin/python" -m pip install -q "${args[@]}"
  # bpy pins numpy < 2 (and strict mypy needs numpy 2's stubs): it lives in its own venv, below, never in this one
  if "$VENV/bin/python" -m pip show -q bpy >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y bpy
    "$VENV/bin/python" -m pip install -q --upgrade numpy
  fi
  echo "$want" > "$stamp"
  echo "setup: ready ($VENV)" >&2
fi

# 2. .venv-blender: the same packages plus bpy (PyPI's Blender as a module) for the Blender plugin's tests, its
#    benchmark and `make blender-extension`. bpy has wheels for CPython 3.11 (bpy <= 5.0, numpy < 2) and 3.13+ only.
BVENV=${VIXEN_BLENDER_VENV:-$ROOT/.venv-blender}
bstamp="$BVENV/.vixen-setup-stamp"
if "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) or sys.version_info >= (3, 13) else 1)'; then
  if ! { [ -f "$bstamp" ] && [ "$(cat "$bstamp")" = "$want" ] && [ -x "$BVENV/bin/python" ]; }; then
    if [ ! -x "$BVENV/bin/python" ]; then
      "$VENV/bin/python" -m venv "$BVENV"
    fi
    "$BVENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$BVENV/bin/python" -m pip install -q -e "$ROOT[test]" -e "$ROOT/plugins/vixen-assets-blender[bpy]"
    echo "$want" > "$bstamp"
    echo "setup: ready ($BVENV, with bpy)" >&2
  fi
else
  echo "setup: no bpy wheel for this Python: the Blender plugin's tests will skip" >&2
fi
