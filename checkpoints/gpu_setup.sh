# Sourced by the GPU sessions' scripts (gpu_digits.sh, gpu_engine_leg.sh, gpu_photo.sh) from the checkout's
# root on the GPU machine, with OUT set: installs the wheels of what that machine lacks
# (.whl/), unpacks MNIST (.gpu/mnist/*.gz, where carried) under /tmp/data, turns numba off where it does not
# run, and prints the versions and the GPU. Sets START (the script's clock) and PYTHONPATH.
export PYTHONUNBUFFERED=1
START=$SECONDS
mkdir -p "$OUT/cross" /tmp/runs /tmp/data/MNIST/raw
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
