#!/usr/bin/env bash
# The CUDA path in one command (docs/gpu.md). On the lent GPU machine, after `make gpu-prepare` here:
#   bash scripts/gpu_check.sh "$OUT"                      (carry ["gpu"]; about 5 minutes, at most 8)
# Dry run on a CPU (the default suite's tests/unit/test_gpu_check.py):
#   bash scripts/gpu_check.sh OUT --device cpu --quick --data-dir data/demo/sst2 --teacher packaged-minilm
# Writes OUT/gpu_check.json after every part. PYTHON picks the interpreter (default python3, the GPU machine's).
set -uo pipefail
if [ $# -lt 1 ]; then
	echo "usage: $0 OUT_DIR [scripts/gpu_check.py options]" >&2
	exit 2
fi
out=$1
shift
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
mkdir -p "$out"
# The library needs datasets, evaluate and pydantic, which the GPU machine lacks: gpu_prepare.sh downloaded their
# wheels (for its Python 3.12) into gpu/wheels; they go into a scratch folder, never into that Python itself.
if ! "$python" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, sys.argv[1:])))" \
	datasets evaluate pydantic; then
	site=${TMPDIR:-/tmp}/distilflow-gpu-site
	if ! ls gpu/wheels/*.whl >/dev/null 2>&1; then
		echo "gpu-check: datasets/evaluate/pydantic missing and no gpu/wheels: run make gpu-prepare, carry [\"gpu\"]" >&2
		exit 3
	fi
	"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
		gpu/wheels/*.whl || exit 3
	export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
	# datasets 5.2 wants pyarrow >= 24 and fsspec <= 2026.9 from the machine; a clash shows here and in the JSON.
	"$python" -c "import datasets, evaluate, pydantic" || echo "gpu-check: the carried wheels do not import" >&2
fi
export PYTHONPATH=$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-10} DISTILFLOW_PROGRESS_INTERVAL_S=${DISTILFLOW_PROGRESS_INTERVAL_S:-15}
export GPU_CHECK_COMMAND="bash scripts/gpu_check.sh $out${*:+ $*}"
# The parts' budgets add up to under 8 minutes; this stops a hung one before the device's 10-minute limit.
timeout --signal=TERM --kill-after=10 "${GPU_CHECK_TIMEOUT_S:-540}" "$python" scripts/gpu_check.py "$out" "$@"
