#!/usr/bin/env bash
# Run the benchmarks whose NVIDIA rows the issues ask for, in one call on the NVIDIA machine:
#   bash scripts/nvidia-bench.sh [upload] [textures] [load_stage] [accel]     (default: all four)
# Prepare .gl/ and .whl/ first (docs/nvidia.md). Each benchmark writes its JSON and its printed table under $OUT
# (./out/ when OUT is unset): <name>.json and <name>.log. Every figure is printed beside its floor or peer measured in
# the same run. A benchmark that fails or runs past its time limit does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
# shellcheck source=scripts/nvidia-env.sh
source scripts/nvidia-env.sh > "$out/bench-env.log" 2>&1 || { cat "$out/bench-env.log"; exit 1; }
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(upload textures load_stage accel)
rc=0
for name in "${which[@]}"; do
  case $name in
    upload)     args=(benchmarks/bench_upload.py --repeat 3); limit=240 ;;
    textures)   args=(benchmarks/bench_textures.py --files 3 --small-files 500 --repeat 3); limit=240 ;;
    load_stage) args=(benchmarks/bench_load_stage.py --repeat 3); limit=300 ;;
    accel)      args=(benchmarks/bench_accel.py); limit=180 ;;
    *) echo "nvidia-bench: unknown benchmark $name" >&2; exit 2 ;;
  esac
  echo "== $name: ${args[*]}" | tee "$out/$name.log"
  timeout "$limit" python3 "${args[@]}" --json "$out/$name.json" >> "$out/$name.log" 2>&1
  status=$?
  echo "== $name exit status $status" >> "$out/$name.log"
  [ $status -ne 0 ] && rc=$status
  grep -E "PASS|MISS|----|x the floor|of the|GB/s|Mtri|Mrays" "$out/$name.log" | tail -40
done
exit $rc
