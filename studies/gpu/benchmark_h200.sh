#!/usr/bin/env bash
# ONE device run of both sampler benchmarks on the H200 (see BENCHMARKS.md).
# Prepare here first (the wheels the GPU machine lacks; ../shared does not travel):
#   echo /.gpu-run/ >> .git/info/exclude
#   mkdir -p .gpu-run && cp -r ../shared/device/wheels-py312 .gpu-run/
# then run it through the device tool with carry=[".gpu-run"]:
#   bash studies/gpu/benchmark_h200.sh
# Results come back under $OUT: mnist/benchmark.{md,json}, cifar10/benchmark.{md,json}, logs.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
  .gpu-run/wheels-py312/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
for model in mnist cifar10; do
  timeout 270 python3 -m experiments.benchmark --config=configs/benchmark_ncsn.py:$model \
    --workdir="$OUT/$model" 2>&1 | tail -n 200 > "$OUT/$model.log"
done
