"""Small GGUF files in the same format as the real ones, cut from them: the first `n_layers` blocks and the
first `n_vocab` tokens (embedding rows and tokenizer entries), quantized tensors copied byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

TOKENIZER_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")


def shrink_gguf(src: Path, dst: Path, n_layers: int = 2, n_vocab: int = 1024) -> Path:
    r = GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(str(dst), arch)
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        val = f.contents()
        if key == f"{arch}.block_count":
            val = n_layers
        if key in TOKENIZER_ARRAYS:
            val = val[:n_vocab]
        sub = f.types[1] if f.types[0] == GGUFValueType.ARRAY else None
        w.add_key_value(key, val, f.types[0], sub_type=sub)
    for t in r.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= n_layers:
            continue
        data = np.array(t.data)
        if t.name in ("token_embd.weight", "output.weight"):
            data = data[:n_vocab]
        w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst
