#!/usr/bin/env bash
# The GPU part of the performance issue in one place, for a machine with a CUDA GPU and its
# own PyTorch (nothing is installed: onespike runs from this source tree). From the
# repository root:
#
#   bash benchmarks/gpu.sh tests    # the tests that run only with a GPU (~1 min)
#   bash benchmarks/gpu.sh speed    # float64 and float32, batch 1/64/256, no memory (~5 min)
#   bash benchmarks/gpu.sh memory   # peak device memory, fresh process per configuration
#
# Results go to $OUT (default benchmarks/results) as gpu-*.{json,md} and gpu-tests.log.
# DEVICE, MODELS, MEMORY_MODELS and PYTHON override the defaults (DEVICE=cpu
# MODELS=tiny_mlp,tiny_cnn MEMORY_MODELS=tiny_cnn runs the same commands on a machine without a
# GPU, to check them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
MODELS=${MODELS:-vgg16_cifar,vgg16_cifar_kaiming,vgg16_cifar_bnrelu,resnet18_cifar,vgg_fmnist,lenet5_fmnist}
MEMORY_MODELS=${MEMORY_MODELS:-vgg16_cifar,resnet18_cifar}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi -L
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
case "${1:-}" in
tests)
    "$PY" -m pytest -p no:cacheprovider -q -k cuda --continue-on-collection-errors tests 2>&1 | tee "$OUT/gpu-tests.log" ;;
speed)
    "$PY" benchmarks/run.py --device "$DEVICE" --models "$MODELS" --batches 1,64,256 \
        --dtypes float64,float32 --engines relu,closed-cert-default,event,event-default,call \
        --repeats 3 --budget 3 --max-run 20 --no-memory --no-progress \
        --out "$OUT/gpu-speed.json" --markdown "$OUT/gpu-speed.md" ;;
memory)
    "$PY" benchmarks/run.py --device "$DEVICE" --models "$MEMORY_MODELS" \
        --batches 1,64 --dtypes float64,float32 --engines relu,event-default,call \
        --repeats 2 --budget 2 --max-run 20 --no-progress \
        --out "$OUT/gpu-memory.json" --markdown "$OUT/gpu-memory.md" ;;
*)
    echo "usage: bash benchmarks/gpu.sh tests|speed|memory" >&2; exit 2 ;;
esac
