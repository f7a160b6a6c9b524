#!/bin/bash
# One prepared run of the CUDA checks and GPU benchmarks, output under $OUT.
# On the GPU machine (CUDA torch, no project deps; .whl/ and crosssim/ carried):
#     bash benchmarks/gpu_check.sh
# Here, the same steps at small sizes on the CPU (to catch trivial failures first;
# .venv/bin/python when there is one, else PY or python3):
#     OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh cpu
# Every step runs under a timeout and the script goes on past a failing one, so a
# single run gives every figure; a summary of the steps' exit codes ends the log.
DEV=${1:-cuda}
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
if [[ $DEV == cuda ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >/dev/null \
    && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit 1
  PY=python3
else
  export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
  PY=${PY:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}  # the project's venv first
fi
[[ -d crosssim/simulator ]] && export CROSSSIM_PATH=${CROSSSIM_PATH:-$PWD/crosssim}
export OPENBLAS_NUM_THREADS=1
summary=()
step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, keep going
  local name=$1 limit=$2; shift 2
  echo "=== $name: $* (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  summary+=("$name rc=$rc $((SECONDS - t0))s")
}

if [[ $DEV == cuda ]]; then
  B_MVM=65536; NETS=resnet20,resnet50; R20=256; R50=4; TRAIN=256; REP=3; THR=(); CS=resnet20,resnet50
  KERN=int8,float32,float16; DS=mnist1d
else
  B_MVM=1024; NETS=lenet,resnet20; R20=8; R50=1; TRAIN=8; REP=1; THR=(--threads 1); CS=lenet
  KERN=int8,float32; DS=digits
fi

step env 60 bash -c "nvidia-smi 2>/dev/null | head -15; $PY -c 'import torch, sys; print(sys.version); print(torch.__version__, torch.cuda.is_available(), torch.backends.cpu.get_cpu_capability()); import cimdse; print(cimdse.__file__)'; echo CROSSSIM_PATH=\$CROSSSIM_PATH"
if [[ $DEV == cuda ]]; then
  step tests_cuda 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_crossbar_torch.py tests/test_train_cli.py -k cuda
else
  step tests_cuda 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_crossbar_torch.py -k "cuda or by_hand or override"
fi
step calibration 60 $PY -c "
import torch; from cimdse import crossbar_torch as ct
for d in ['$DEV']:
    t = ct.gemm_times(d); print(d, {k: round(v * 1e3, 4) for k, v in t.items()}, 'fastest', min(t, key=t.get))"
step bench_crossbar 150 $PY benchmarks/bench_crossbar.py --device $DEV "${THR[@]}" --batch $B_MVM --repeat $REP
step bench_network 300 $PY benchmarks/bench_network.py --device $DEV "${THR[@]}" --repeat $REP --no-numpy \
  --cases $NETS --crosssim $CS --kernels $KERN --batch lenet=32 --batch resnet20=$R20 --batch resnet50=$R50 --train-step $TRAIN
CIMDSE=($PY -c 'import sys; from cimdse.cli import main; sys.exit(main())')
step search_hw 200 "${CIMDSE[@]}" search --dataset $DS --accuracy hardware --device $DEV \
  --episodes 4 --pretrain-epochs 1 --final-epochs 1 --final-top-k 1 --methods random --out "$OUT/search_hw" --quiet
step search_help 30 "${CIMDSE[@]}" search --help
echo "=== summary"; printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
