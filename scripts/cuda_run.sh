#!/bin/bash
# The prepared CUDA session (one GPU): the ablation runs whose models the repository ships, the scaling grid with
# larger sizes, training speed on CUDA (bf16 autocast, eager and torch.compile), then bench/speed.py against the peers
# on CUDA (with MFU). Writes logs and results under $OUT (default: out/cuda).
#   bash scripts/cuda_run.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/cuda}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
{
  nvidia-smi -L
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  nproc
} 2>&1 | tee "$OUT/gpu.txt"

# 1. The ablation protocol on both shipped corpora (each variant over the learning-rate sweep, then seeds at its
#    best); writes docs/ablations.md and models/.
start=$SECONDS
$PY -m experiments.ablate --corpus shakespeare,wagahai --device cuda --jobs 8 --report docs/ablations.md --ship models \
  > "$OUT/ablate.log" 2>&1
echo "ablate exit $? wall $((SECONDS - start)) s" | tee -a "$OUT/ablate.log"
grep -v "^  '" "$OUT/ablate.log" | tail -40
tar czf "$OUT/models.tgz" models
tar czf "$OUT/docs.tgz" docs runs/ablations/*/results.json runs/ablations/*/results.md runs/ablations/*/samples.md \
  runs/ablations/*/trials.json runs/ablations/*/*.png runs/ablations/*/*/*/metrics.jsonl

# 1b. Scaling laws: the CPU grid plus three larger sizes (to 21M non-embedding parameters), bf16 autocast and
#     torch.compile; its report goes to $OUT (the committed docs/scaling.md is the CPU run's).
start=$SECONDS
$PY -m experiments.scaling --device cuda --compile --jobs 4 --sizes cpu,gpu --out runs/scaling-cuda \
  --report "$OUT/scaling/scaling.md" > "$OUT/scaling.log" 2>&1
echo "scaling exit $? wall $((SECONDS - start)) s" | tee -a "$OUT/scaling.log"
grep "^\[scaling\]\|^report" "$OUT/scaling.log" | tail -20

# 2. Training speed: full 256-character windows (no short-window phase, so every step has the same shape),
#    the default batch of 4 and a GPU-sized batch of 64, eager and compiled. 300 steps each.
for batch in 4 64; do
  for compile in "" "--compile"; do
    name="b${batch}${compile:+_compile}"
    echo "== $name" >> "$OUT/speed.log"
    $PY train.py --device cuda --steps 300 --batch_size "$batch" --short_context 0 --eval_interval 300 \
      --eval_iters 5 --sample_chars 0 --log_interval 25 --no_progress $compile --save "/tmp/speed/$name" \
      >> "$OUT/speed.log" 2>&1
    $PY - "$name" "/tmp/speed/$name/metrics.jsonl" >> "$OUT/speed.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[2]) if '"tokens_per_s"' in l]
steady = [r["tokens_per_s"] for r in rows if r["step"] > 50]
print(json.dumps({"run": sys.argv[1], "steady_tokens_per_s": round(statistics.median(steady)),
                  "first_25_steps_s": rows[0]["elapsed_s"], "steps": rows[-1]["step"],
                  "total_train_s": rows[-1]["elapsed_s"]}))
PY
  done
done
cat "$OUT/speed.jsonl"

# 3. bench/speed.py on CUDA: bf16 training with compile (MFU against the H200's dense bf16 peak, 989 TFLOP/s) at batch 32
#    and a GPU-sized batch, generation, memory. fp32 generation (the peers' generate() has no bf16 switch here).
for batch in 32 256; do
  $PY -m bench.speed --device cuda --dtype bf16 --compile --peak_tflops 989 --batch "$batch" --threads 4 \
    --only training --json "$OUT/bench_train_b$batch.jsonl" > "$OUT/bench_train_b$batch.txt" 2>&1
done
$PY -m bench.speed --device cuda --only generation,memory --threads 4 --json "$OUT/bench_gen.jsonl" \
  > "$OUT/bench_gen.txt" 2>&1
tail -n 30 "$OUT"/bench_*.txt
ls -la "$OUT"
