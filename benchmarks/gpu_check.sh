#!/usr/bin/env bash
# One device run (the `device` tool's GPU machine): the test suite with CUDA as lamina's default
# device (CUDA-only tests included), then bench_gpu.py. Logs and JSON go to $OUT (or ./gpu_out).
# Uses the machine's python3 and torch; lamina runs from this checkout (PYTHONPATH).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
TESTS_S=${TESTS_S:-150}; BENCH_BUDGET_S=${BENCH_BUDGET_S:-170}
{ nvidia-smi -L; python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"; nproc; } 2>&1 | tee "$OUT/env.log"
start=$(date +%s)
timeout "$TESTS_S" python3 -m pytest -q -p no:randomly -p no:benchmark -n 8 -rfE tests lamina \
  --junitxml="$OUT/junit.xml" > "$OUT/tests.log" 2>&1
echo "tests: exit $? in $(( $(date +%s) - start )) s"; grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -40; tail -3 "$OUT/tests.log"
python3 benchmarks/bench_gpu.py --budget "$BENCH_BUDGET_S" --output "$OUT/results_gpu.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" | grep -v Warning
echo "total $(( $(date +%s) - start )) s"
