#!/bin/bash
# The short CUDA check (a few minutes of one GPU, where scripts/cuda_run.sh takes hours): the tests that need a GPU
# with the decoders beside them, then bench.speed on CUDA: generation and serving against the peers (fp32), and
# bf16 compiled training with MFU against the H200's dense bf16 peak (989 TFLOP/s). Writes logs under $OUT.
#   bash scripts/cuda_quick.sh
set -u
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
{
  nvidia-smi -L
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_generation.py tests/test_model.py 2>&1 | tail -n 15 | tee "$OUT/tests.txt"
$PY -m bench.speed --device cuda --only generation,serving --gen_batch 1 --gen_rounds 3 --threads 4 \
  --json "$OUT/bench_gen.jsonl" 2>&1 | tail -n 30 | tee "$OUT/bench_gen.txt"
$PY -m bench.speed --device cuda --dtype bf16 --compile --peak_tflops 989 --batch 64 --threads 4 --only training \
  --json "$OUT/bench_train.jsonl" 2>&1 | tail -n 12 | tee "$OUT/bench_train.txt"
