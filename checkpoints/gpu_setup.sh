# Sourced by the GPU sessions' scripts (gpu_digits.sh, gpu_engine_leg.sh, gpu_photo.sh) from the checkout's
# root on the GPU machine, with OUT set: installs the wheels of what that machine lacks
# (.whl/), unpacks MNIST (.gpu/mnist/*.gz, where carried) under /tmp/data, turns numba off where it does not
# run, and prints the versions and the GPU. Sets START (the script's clock) and PYTHONPATH,
# and defines the two steps the scripts share (train_in_background, cross_device_step), whose
# runs and logs go to RUNS (default /tmp/runs).
export PYTHONUNBUFFERED=1
START=$SECONDS
RUNS=${RUNS:-/tmp/runs}
mkdir -p "$OUT/cross" "$RUNS" /tmp/data/MNIST/raw
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
for f in .gpu/mnist/*.gz; do [ -e "$f" ] || continue; gunzip -c "$f" > "/tmp/data/MNIST/raw/$(basename "$f" .gz)"; done
export ARCODEC_DATA=/tmp/data
python3 - <<'PY' || { echo "numba does not run here: ARCODEC_NO_NUMBA=1"; export ARCODEC_NO_NUMBA=1; }
import numba, numpy as np
print("numba", numba.__version__, "numpy", np.__version__)
assert numba.njit(lambda a: a.sum())(np.arange(4)) == 6
PY
python3 -c "import torch, arcodec; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"

train_in_background() {  # NAME, then arcodec train's arguments: out to $RUNS/NAME, its log $RUNS/NAME.log
    local name=$1; shift
    echo "arcodec train $* --out runs/$name"  # as the model cards record it
    python3 -m arcodec train "$@" --out "$RUNS/$name" > "$RUNS/$name.log" 2>&1 &
}

cross_device_step() {  # benchmarks/cross_device.py's device step alone on the GPU (the timings are the
    # decoder's; OUT/cross), then the engine's device tests in the background ($RUNS/pytest.log)
    timeout 150 python3 benchmarks/cross_device.py device .gpu/cpu_files "$OUT/cross" --device "$DEVICE" \
        > "$RUNS/cross.log" 2>&1
    echo "cross-device: exit $? after $((SECONDS - START)) s"; grep '^\[' "$RUNS/cross.log" | cut -c1-300
    (timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_gated_engine.py -k device > "$RUNS/pytest.log" 2>&1;
     echo "pytest exit $?" >> "$RUNS/pytest.log") &
}
