# Source this on the NVIDIA machine (bash, from the repository root) to get a Python that runs vixen-assets on the
# NVIDIA driver with the Khronos validation layer. That machine has the driver but no Vulkan loader and no package
# registry: everything comes from two folders prepared beforehand on a machine with a registry (docs/nvidia.md):
#   .gl/   amd64 debs: libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 vulkan-validationlayers
#   .whl/  cp312 manylinux wheels: vulkan cffi pycparser usd-core zstandard texture2ddecoder etcpak (+ wgpu sniffio
#          rendercanvas for the benchmarks' wgpu peer)
# Idempotent. It does NOT set GLIBC_TUNABLES: the package keeps the driver loaded (vixen_assets/vk/pinning.py), so a
# process that opens and closes many devices works without it. Set VIXEN_NVIDIA_TLS_TUNABLE=1 to add the old
# workaround (glibc.rtld.optional_static_tls=262144) for a comparison run.
_vx_root=$(pwd)
if [ ! -d "$_vx_root/.gl" ] || [ ! -d "$_vx_root/.whl" ]; then
  echo "nvidia-env: $_vx_root/.gl and $_vx_root/.whl are needed (see docs/nvidia.md)" >&2
  return 1 2>/dev/null || exit 1
fi
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
  for f in "$_vx_root"/.gl/lib*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ ! -f "$HOME/vl/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json" ]; then
  mkdir -p "$HOME/vl"
  dpkg -x "$_vx_root"/.gl/vulkan-validationlayers_*.deb "$HOME/vl"
fi
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$HOME}
export VK_ADD_LAYER_PATH=$HOME/vl/usr/share/vulkan/explicit_layer.d
export LD_LIBRARY_PATH=$HOME/vl/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
if [ "${VIXEN_NVIDIA_TLS_TUNABLE:-0}" = 1 ]; then
  export GLIBC_TUNABLES=glibc.rtld.optional_static_tls=262144
fi
if [ -d "$_vx_root/shared/assets" ] && [ -z "${VIXEN_SHARED_ASSETS:-}" ]; then
  export VIXEN_SHARED_ASSETS=$_vx_root/shared/assets  # the third-party test assets, when the tree carries them
fi
if ! python3 -c 'import vulkan, pxr, zstandard, texture2ddecoder, vixen_assets' >/dev/null 2>&1; then
  _vx_pkgs=$(ls "$_vx_root"/.whl/*.whl | sed -e 's|.*/||' -e 's|-.*||' | sort -u | tr '\n' ' ')
  python3 -m pip install -q --no-index --find-links "$_vx_root/.whl" $_vx_pkgs || { echo "nvidia-env: wheel install failed" >&2; return 1 2>/dev/null || exit 1; }
  python3 -m pip install -q --no-deps --no-build-isolation -e "$_vx_root" || { echo "nvidia-env: install of vixen-assets failed" >&2; return 1 2>/dev/null || exit 1; }
  for p in "$_vx_root"/plugins/*/; do
    [ -f "$p/pyproject.toml" ] && python3 -m pip install -q --no-deps --no-build-isolation -e "$p"
  done
fi
unset _vx_root _vx_pkgs
