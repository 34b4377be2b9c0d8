# Sourced by the device scripts here: the environment and helpers every one-call run shares.
# (The 2026-12-04 runs that docs/ report ran this same preamble inline in each script.)
# Needs BUDGET_S (seconds the whole script may take) set before; gives PY, OUT, W (a work
# folder whose logs/ and results/ the scripts pack), left (seconds of BUDGET_S left),
# pack (results.tar and logs.tar.gz into $OUT, rewritten after each stage), run_benchmarks
# (the NCSN sampler benchmarks beside PyTorch, CIFAR-10 then MNIST, BENCH_S/2 seconds each;
# BENCH=:smoke for a CPU test) and gpu.txt.
PY=${PY:-python3}
OUT=${OUT:-/tmp/out}
W=${W:-/tmp/gpu-work}
start=$SECONDS
left() { echo $(( BUDGET_S - (SECONDS - start) )); }
pack() {
  tar -C "$W" -cf "$OUT/results.tar" results 2>/dev/null
  tar -C "$W" -czf "$OUT/logs.tar.gz" logs 2>/dev/null
}
mkdir -p "$OUT" "$W/logs" "$W/results"
# The GPU machine lacks ml_collections and clu (../shared/device/README.md): .gpu-run/wheels.
$PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu-run/wheels/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv; $PY -c \
  'import jax, flax, sys; print(sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__, jax.devices())') \
  > "$OUT/gpu.txt" 2>&1
run_benchmarks() {
  local model variant
  for model in cifar10 mnist; do
    variant=${BENCH:-:$model}
    timeout $(( BENCH_S / 2 )) $PY -m experiments.benchmark \
      --config="configs/benchmark_ncsn.py$variant" --workdir="$W/bench/$model" \
      > "$W/logs/bench_$model.log" 2>&1
    echo "benchmark $model exit $? at $((SECONDS - start)) s" >> "$W/logs/stages.txt"
    mkdir -p "$W/results/bench_$model"
    cp "$W/bench/$model"/benchmark.{md,json} "$W/results/bench_$model/" 2>/dev/null
    pack
  done
}
