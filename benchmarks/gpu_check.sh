#!/usr/bin/env bash
# GPU check (issue 3): run on a machine with a CUDA build of torch, from the repository root, e.g. through the
# session `device` tool:   bash benchmarks/gpu_check.sh
# Prints domainfit vs transformers.Trainer training throughput with MFU against the GPU's measured bf16 matmul
# peak (domainfit's precision "auto" is bf16 autocast on GPUs), then runs the training tests on the GPU.
# About 8 minutes on one H200 (the compile benchmark compiles twice). Needs the Financial PhraseBank split in ../shared/datasets (or DOMAINFIT_DATA).
set -euo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
PY=${PY:-python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.__version__, torch.cuda.get_device_name(0))"
# install without the CPU constraints so the machine's CUDA torch is kept
"$PY" -m pip install -q --no-deps -e . 2>/dev/null || true
"$PY" benchmarks/bench_train.py --seeds 42 --systems trainer-grouped domainfit --out "$OUT/bench_train_gpu.md"
"$PY" benchmarks/bench_compile.py --steps 121 > "$OUT/bench_compile_gpu.md"; cat "$OUT/bench_compile_gpu.md"
"$PY" -m pytest -q -x tests/test_training.py tests/test_precision.py
# federated sites on the GPU: bf16 autocast (precision auto), and resume round for round (never run on a GPU yet)
"$PY" -m pytest -q -x tests/test_federated.py tests/test_federated_resume.py

# Multi-GPU (issue 21): DDP over every visible GPU with torchrun (NCCL), then the same config in one process,
# and the two test losses side by side (docs/distributed.md). Never run yet: no GPU was lent to the session that
# wrote it, so read its first output with care. Skipped with fewer than 2 GPUs; the CPU version of this check
# (gloo, 2 processes) is tests/test_distributed.py (pytest -m distributed).
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  CFG=src/domainfit/configs/phrasebank.yaml  # MiniLM on PhraseBank, split 80/10/10 with seed 42
  DATA=${DOMAINFIT_DATA:-../shared/datasets}/financial_phrasebank/FinancialPhraseBank-v1.0/Sentences_50Agree.txt
  COMMON="data.train=$DATA train.epochs=1 output.overwrite=true"
  "$PY" -m torch.distributed.run --nproc_per_node "$NGPU" -m domainfit train "$CFG" $COMMON output.dir="$OUT/ddp-$NGPU"
  # the same through accelerate launch (its --config_file gpus.yaml from docs/distributed.md works alike)
  "$PY" -m accelerate.commands.launch --num_processes "$NGPU" --multi_gpu -m domainfit train "$CFG" $COMMON \
      output.dir="$OUT/ddp-accelerate-$NGPU"
  CUDA_VISIBLE_DEVICES=0 "$PY" -m domainfit train "$CFG" $COMMON output.dir="$OUT/ddp-1"
  "$PY" - "$OUT" "$NGPU" <<'PYEOF'
import json, sys
out, n = sys.argv[1], sys.argv[2]
for name in ("ddp-1", f"ddp-{n}", f"ddp-accelerate-{n}"):
    m = json.load(open(f"{out}/{name}/metrics.json"))
    print(f"{name}: test f1_macro {m['test']['f1_macro']:.4f} loss {m['test']['loss']:.4f}, "
          f"{m['train']['samples_per_second']} samples/s, processes {m['train']['processes']}")
PYEOF
else
  echo "multi-GPU check skipped: $NGPU GPU(s) visible"
fi
