#!/usr/bin/env bash
# Run `make test`'s suite (tests and plugins, validation layer on) on the NVIDIA machine, in one call:
#   bash scripts/test-nvidia.sh [extra pytest arguments, e.g. -k trace]
# Prepare .gl/ and .whl/ first (docs/nvidia.md). Writes $OUT/nvidia-junit.xml and $OUT/nvidia-tests.log when OUT
# is set (else under ./out/). GLIBC_TUNABLES is not set (VIXEN_NVIDIA_TLS_TUNABLE=1 sets it, for comparison).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
log=$out/nvidia-tests.log
echo "== $(date -u +%FT%TZ) $(uname -srm)" > "$log"
# shellcheck source=scripts/nvidia-env.sh
source scripts/nvidia-env.sh >> "$log" 2>&1 || { cat "$log"; exit 1; }
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  echo "GLIBC_TUNABLES=${GLIBC_TUNABLES:-<unset>} VIXEN_SHARED_ASSETS=${VIXEN_SHARED_ASSETS:-<unset>}"
  python3 - <<'PY'
import vixen_assets as va
for d in va.list_devices():
    f = d.features
    print(f"device {d.index}: {d.name} ({d.device_type}, Vulkan {d.api_version}, {d.driver}) "
          f"ray_query={f.get('ray_query')} ray_tracing_pipeline={f.get('ray_tracing_pipeline')} "
          f"acceleration_structure={f.get('acceleration_structure')}")
PY
} 2>&1 | tee -a "$log"
VIXEN_VALIDATION=1 python3 -m pytest tests plugins -p no:cacheprovider -q -rfE \
  --junitxml="$out/nvidia-junit.xml" "$@" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
echo "== pytest exit status $rc" | tee -a "$log"
exit "$rc"
