#!/usr/bin/env bash
# The GPU benchmark run as one prepared command (docs/benchmarks.md, "On a GPU").
#
# 1. Here, on a machine whose pip reaches PyPI, from the repository root:
#        bash benchmarks/gpu_run.sh prepare
#    downloads into .whl/ (ignored by git, about 13 MB) the wheels that the GPU image lacks:
#    numpyro 0.22 (the image has 0.21), BlackJAX, and the anchors dynamax and cuthbert with
#    their own missing needs. JAX stays the image's (0.11; the CUDA wheels of another version
#    are far over what a device call carries); the package and the benchmarks run on it.
# 2. On the GPU machine, one call from the repository root, carrying .whl:
#        bash benchmarks/gpu_run.sh
#    installs the wheels under /tmp/site, records the device, runs `benchmarks/suite.py`
#    (the headline rows of every benchmark, within SUITE_BUDGET seconds, 270 by default) and
#    a GPU-sized `benchmarks/sts.py` (cut off after STS_SECONDS, 200 by default; it rewrites its
#    results after every group, so a cut run keeps what it measured). Everything lands in
#    $OUT (or benchmarks/results/gpu when OUT is unset): the JSON and Markdown tables, the logs
#    and nvidia-smi's line. The whole run fits a 600 s call.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
  mkdir -p .whl
  # pip matches each manylinux tag exactly: list the ones these wheels are built for.
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    numpyro==0.22.0 blackjax==1.7.1 dynamax==1.0.3 cuthbert==0.1.1 cuthbertlib==0.1.1 \
    tfp-nightly fastprogress==1.0.3 dm-tree gast decorator || exit 1
  du -sh .whl
  exit 0
fi

out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore::SyntaxWarning
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/device.txt" 2>&1
python3 -c "import jax, numpyro, blackjax; print(jax.__version__, jax.devices(), \
  numpyro.__version__, blackjax.__version__)" | tee -a "$out/device.txt"

timeout $((${SUITE_BUDGET:-270} + 60)) python3 benchmarks/suite.py \
  --budget "${SUITE_BUDGET:-270}" --out "$out" 2>&1 | tee "$out/suite.log"
suite=$?
timeout "${STS_SECONDS:-200}" python3 benchmarks/sts.py --out "$out" \
  --models co2 weekly --T 1000 10000 --methods sequential associative auto scan dynamax \
  --nuts-methods auto scan --nuts-T 500 2>&1 | tee "$out/sts.log"
sts=$?  # 124: cut off at STS_SECONDS (the groups measured so far are written)
ls -l "$out"
echo "suite exit $suite, sts exit $sts"
[[ $suite == 0 && ($sts == 0 || $sts == 124) ]]
