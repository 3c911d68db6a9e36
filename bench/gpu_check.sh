#!/usr/bin/env bash
# One prepared GPU check (docs/bench.md). On a one-GPU machine with torch and transformers installed
# it prints, in a few minutes:
#   1. the loss bench on CUDA: OpenRLHF's PolicyLoss("ppo") vs the patched "cfpo", time and
#      torch.cuda.max_memory_allocated ratios (bench/loss_bench.py --device cuda);
#   2. `openrlhf-cfpo lab --device cuda` on a short sweep (--quick, one seed, iterations 1 and 4);
#   3. the HF evaluation backend generating on CUDA with a tiny model built from a config;
#   4. the Ray worker hook check: no torch.cuda call and no CUDA-probing import while the hook runs,
#      CFPO in the actor's PolicyLoss on CUDA, and a CUDA_VISIBLE_DEVICES set after the hook (as Ray
#      does) still taking effect.
# It exits non-zero at the first step that fails.
#
#   bash bench/gpu_check.sh                      # or: make gpu-check
#   bash bench/gpu_check.sh download DIR [X.Y]   # with internet: fill DIR with the wheels step 0 installs,
#                                                # for Python X.Y on x86-64 Linux (default: this Python's)
#
# Step 0 makes a venv in $GPU_CHECK_DIR that sees $PYTHON's own packages (torch, transformers) and
# installs only the PINS missing there: OpenRLHF 0.11.2 (pure Python, --no-deps), DeepSpeed built
# without ops (OpenRLHF's loss module imports it), peft and accelerate (openrlhf.models imports them),
# pylatexenc, matplotlib (lab figures) and their small dependencies, about 30 MB; no vLLM, Ray or
# flash-attn. The hook check is a test helper: it imports openrlhf.models with the tests' import-only
# flash_attn stand-in, as the CPU tests do.
#
# Environment: PYTHON (default python3); GPU_CHECK_DIR (default: a new temporary folder);
# GPU_CHECK_WHEELS (install offline, from this folder); GPU_CHECK_PYTHON (run with this interpreter as
# it is: no venv, no installs); GPU_CHECK_DEVICE (default cuda; cpu runs the same steps on a CPU, as
# tests/integration/test_gpu_check.py does); GPU_CHECK_BENCH_SHAPES (default 64x4096,8x32768).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
BENCH_SHAPES="${GPU_CHECK_BENCH_SHAPES:-64x4096,8x32768}"
# Versions tested together with OpenRLHF 0.11.2 (the CPU venv's; DeepSpeed is OpenRLHF's own pin).
# The plotting stack is left to pip (the newest release for the machine's Python; 3.11 dropped 3.10).
PINS=(
  openrlhf==0.11.2
  deepspeed==0.19.6 einops==0.8.2 hjson==3.1.0 msgpack==1.2.4 ninja==1.13.2 psutil==7.2.2 py-cpuinfo==9.0.0
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  peft==0.21.2 accelerate==1.15.0 pylatexenc==2.11 setuptools==80.10.2
  matplotlib contourpy cycler fonttools kiwisolver pillow pyparsing python-dateutil six
)
DEEPSPEED_PIN=deepspeed==0.19.6
# For pip only: DeepSpeed's setup.py asks nvcc for the CUDA version when it sees a CUDA torch; built
# for the CPU accelerator without ops it is plain Python, and picks the GPU at run time.
DEEPSPEED_BUILD_ENV=(env DS_ACCELERATOR=cpu DS_BUILD_OPS=0)

section() { printf '\n== %s ==\n' "$1"; }
fail() { echo "bench/gpu_check.sh: $1" >&2; exit 1; }

if [[ "${1:-}" == "download" ]]; then
  [[ $# -ge 2 ]] || fail "usage: bash bench/gpu_check.sh download DIR [PYTHON_VERSION]"
  dir="$2"
  version="${3:-$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
  mkdir -p "$dir"
  wheels=()
  for pin in "${PINS[@]}"; do [[ "$pin" == "$DEEPSPEED_PIN" ]] || wheels+=("$pin"); done
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$dir" "${wheels[@]}"
  # DeepSpeed publishes only a source archive; its wheel built here (no ops) is pure Python.
  "${DEEPSPEED_BUILD_ENV[@]}" "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$dir" "$DEEPSPEED_PIN"
  du -sh "$dir"
  exit 0
fi

start=$SECONDS
WORK="${GPU_CHECK_DIR:-$(mktemp -d -t openrlhf-cfpo-gpu-check.XXXXXX)}"
mkdir -p "$WORK"
section "0/4 environment in $WORK"
if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
  PY="$GPU_CHECK_PYTHON"
else
  [[ -x "$WORK/venv/bin/python" ]] || "$PYTHON" -m venv "$WORK/venv"
  PY="$WORK/venv/bin/python"
  # The venv sees the base interpreter's packages after its own (works whether PYTHON is a venv or not).
  base_sites="$("$PYTHON" -c 'import site; print(repr(site.getsitepackages()))')"
  venv_site="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  echo "import site; list(map(site.addsitedir, $base_sites))" > "$venv_site/gpu_check_base.pth"
  "$PY" -c 'import torch, transformers' 2>/dev/null \
    || fail "$PYTHON cannot import torch and transformers; set PYTHON to the interpreter that has them"
  mapfile -t missing < <("$PY" - "${PINS[@]}" <<'EOF'
import importlib.metadata, sys
for pin in sys.argv[1:]:
    try:
        importlib.metadata.version(pin.partition("==")[0])
    except importlib.metadata.PackageNotFoundError:
        print(pin)
EOF
  )
  if (( ${#missing[@]} )); then
    source_args=()
    [[ -z "${GPU_CHECK_WHEELS:-}" ]] || source_args=(--no-index --find-links "$GPU_CHECK_WHEELS")
    echo "installing: ${missing[*]}"
    "${DEEPSPEED_BUILD_ENV[@]}" "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
      --no-build-isolation ${source_args[@]+"${source_args[@]}"} "${missing[@]}"
  fi
fi
"$PY" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda available: {torch.cuda.is_available()}")'
if [[ "$DEVICE" == "cuda" ]]; then
  "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' \
    || fail "no CUDA device is visible to $PY (GPU_CHECK_DEVICE=cpu runs the steps on a CPU)"
  "$PY" -c 'import torch; print(torch.cuda.get_device_name(0))'
fi

section "1/4 loss bench: OpenRLHF PolicyLoss ppo vs patched cfpo on $DEVICE"
PYTHONPATH="$ROOT" "$PY" "$ROOT/bench/loss_bench.py" --device "$DEVICE" --shapes "$BENCH_SHAPES"

section "2/4 openrlhf-cfpo lab --device $DEVICE (quick sweep)"
PYTHONPATH="$ROOT" "$PY" -m openrlhf_cfpo.cli lab --quick --seeds 0 --iterations 1,4 --workers 1 --device "$DEVICE" \
  --out "$WORK/lab" --cache-dir "$WORK/lab-cache" --no-progress

section "3/4 HF evaluation backend generating on $DEVICE"
PYTHONPATH="$ROOT" "$PY" "$ROOT/bench/gpu_check_generation.py" --expect-device "$DEVICE"

section "4/4 Ray worker hook: no CUDA before Ray sets CUDA_VISIBLE_DEVICES"
probe=("$PY" "$ROOT/tests/integration/worker_hook_probe.py" --actor-module openrlhf.models --check)
PYTHONPATH="$ROOT" "${probe[@]}" --device "$DEVICE"
PYTHONPATH="$ROOT" "${probe[@]}" --visible-devices "" --device cpu

printf '\ngpu check passed in %d s\n' "$((SECONDS - start))"
