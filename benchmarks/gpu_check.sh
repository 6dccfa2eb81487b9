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
