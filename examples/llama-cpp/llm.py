"""Shared by complete.py and worker.py: load Gemma 3 270M with xllamacpp
(llama.cpp's server code, in process) and complete a prompt.

Settings come from the environment (a route's `env`), the per-request ones
from the query string: ?tokens=N&seed=S&temp=T.
"""
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs

HERE = Path(__file__).resolve().parent
MODEL = os.environ.get("LLAMA_MODEL") or str(HERE / "models" / "gemma-3-270m-q4_k_m.gguf")
THREADS = int(os.environ.get("LLAMA_THREADS") or os.cpu_count() or 2)
N_CTX = int(os.environ.get("LLAMA_CTX") or 1024)
DEFAULT_TOKENS = int(os.environ.get("LLAMA_TOKENS") or 32)
MAX_TOKENS = int(os.environ.get("LLAMA_MAX_TOKENS") or 512)
# llama.cpp's default sampler (temperature 0.8, top-k 40, top-p 0.95) with a
# fixed seed: the same prompt gives the same answer, request after request.
# With seed 2, "The capital of France is" -> " the city of Paris. ..."
# (greedy decoding, temp=0, says " the capital of the country of France.").
DEFAULT_SEED = int(os.environ.get("LLAMA_SEED") or 2)
DEFAULT_TEMP = float(os.environ.get("LLAMA_TEMP") or 0.8)


class BadRequest(ValueError):
    """A request the model cannot serve as asked (a 400, not a breakdown)."""


def load():
    """The model, loaded once: ≈ 1.2 s and ≈ 300 MB on 2 cores."""
    import xllamacpp  # here, so that --help and bad arguments cost nothing

    if not os.path.isfile(MODEL):
        sys.exit(f"no model at {MODEL}: run setup.sh first")
    p = xllamacpp.CommonParams()
    p.model.path = MODEL
    p.n_ctx = N_CTX
    p.n_parallel = 1
    p.cpuparams.n_threads = THREADS
    p.cpuparams_batch.n_threads = THREADS
    p.warmup = False     # a warm-up pass costs time on every start
    p.verbosity = -1     # llama.cpp's log off: stderr stays for errors
    return xllamacpp.Server(p)


def options(query: str = "", tokens: str = "") -> dict:
    """Sampling options from a query string (and an explicit token count)."""
    q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    try:
        n = int(tokens or q.get("tokens") or DEFAULT_TOKENS)
        seed = int(q.get("seed") or DEFAULT_SEED)
        temp = float(q.get("temp") or DEFAULT_TEMP)
    except ValueError as e:
        raise BadRequest(f"bad number: {e}") from None
    if not 1 <= n <= MAX_TOKENS:
        raise BadRequest(f"tokens must be 1..{MAX_TOKENS}")
    if not 0 <= temp <= 5:
        raise BadRequest("temp must be 0..5")
    return {"n_predict": n, "seed": seed, "temperature": temp}


def complete(server, prompt: str, opts: dict, on_text=None) -> str:
    """The completion of `prompt`; each piece also goes to `on_text` as the
    model makes it (streaming), which stops it by returning True. Raises
    RuntimeError on a model error."""
    if not prompt.strip():
        raise BadRequest("empty prompt: send it as the request body")
    pieces = []
    errors = []

    def chunk(res):
        if not isinstance(res, dict) or "error" in res:
            errors.append(res)
            return
        for choice in res.get("choices") or []:
            text = choice.get("text") or ""
            if text:
                pieces.append(text)
                # A callback that returns True stops the generation at once.
                if on_text and on_text(text):
                    return True
        return False

    server.handle_completions(dict(opts, prompt=prompt, stream=True), chunk)
    if errors:
        raise RuntimeError(f"llama.cpp: {errors[0]}")
    return "".join(pieces)
