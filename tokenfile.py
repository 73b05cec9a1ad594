"""
The token files that prepare.py writes and train.py and eval.py read, data/<name>/:

    {train,val}.bin       a header of 256 int64 [MAGIC, VERSION, itemsize, n_tokens, n_examples, 0, ...], then the ids
                          as uint16 while the vocabulary fits, else uint32 (tokenizer.token_dtype)
    {train,val}.idx.npy   (n_examples, 4) int64: start, length, task (an index into tokenizer.TASKS), target_start
                          within the example
    meta.json             the vocabulary, codec, options and counts; written last, so a folder without it is incomplete

Every file is written under a temporary name and renamed (a reader never sees half a file), and every read checks
the header against the file size and the index against the tokens: a truncated or stale file is named, not used.
"""
import json
import os

import numpy as np

from tokenizer import token_dtype

MAGIC, VERSION, HEADER_INTS = 20241122, 1, 256


def atomic_write(path, write):
    """write(tmp_path), then rename: a reader never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}{os.path.splitext(path)[1]}"  # keep the extension: np.save/savez append one
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_token_chunks(path, chunks, vocab_size, n_examples=0):
    """Header + the concatenation of chunks (arrays of ids), streamed: parts need not fit in memory together."""
    dtype = token_dtype(vocab_size)

    def write(tmp):
        n = 0
        with open(tmp, 'wb') as f:
            f.write(np.zeros(HEADER_INTS, np.int64).tobytes())  # placeholder until n_tokens is known
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.size and (chunk.min() < 0 or chunk.max() >= vocab_size):
                    raise ValueError(f"{path}: token id {int(chunk.max())} or {int(chunk.min())} outside the "
                                     f"vocabulary of {vocab_size}")
                f.write(chunk.astype(dtype, copy=False).tobytes())
                n += chunk.size
            header = np.zeros(HEADER_INTS, np.int64)
            header[:5] = [MAGIC, VERSION, np.dtype(dtype).itemsize, n, n_examples]
            f.seek(0)
            f.write(header.tobytes())
    atomic_write(path, write)


def write_tokens(path, tokens, vocab_size, n_examples=0):
    """One token file: 256 int64 header [MAGIC, VERSION, itemsize, n_tokens, n_examples, 0...] + ids."""
    write_token_chunks(path, [tokens], vocab_size, n_examples)


def read_header(path):
    size = os.path.getsize(path)
    if size < HEADER_INTS * 8:
        raise ValueError(f"{path}: {size} bytes is too short for a token file header ({HEADER_INTS * 8} bytes): "
                         f"truncated or not a token file; rerun prepare.py")
    header = np.fromfile(path, dtype=np.int64, count=HEADER_INTS)
    magic, version, itemsize, n_tokens, n_examples = (int(x) for x in header[:5])
    if magic != MAGIC:
        raise ValueError(f"{path}: not a token file written by prepare.py (magic {magic}, expected {MAGIC})")
    if version != VERSION:
        raise ValueError(f"{path}: token file version {version}, this code reads version {VERSION}; rerun prepare.py")
    if itemsize not in (2, 4):
        raise ValueError(f"{path}: bad item size {itemsize} in the header")
    expected = HEADER_INTS * 8 + n_tokens * itemsize
    if size != expected:
        raise ValueError(f"{path}: {size} bytes but the header promises {n_tokens} tokens of {itemsize} bytes "
                         f"({expected} bytes): truncated or stale; rerun prepare.py")
    return dict(itemsize=itemsize, n_tokens=n_tokens, n_examples=n_examples)


def read_tokens(path):
    """The ids of a token file as a read-only np.memmap (uint16 or uint32), header checked."""
    h = read_header(path)
    dtype = np.uint16 if h['itemsize'] == 2 else np.uint32
    if h['n_tokens'] == 0:
        return np.zeros(0, dtype)  # an empty file cannot be memory-mapped
    return np.memmap(path, dtype=dtype, mode='r', offset=HEADER_INTS * 8, shape=(h['n_tokens'],))


def load_split(data_dir, split):
    """(tokens memmap, idx (n_examples, 4) [start, length, task, target_start], meta dict) of a prepared split."""
    meta_path = os.path.join(data_dir, 'meta.json')
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{data_dir} is not a prepared dataset (no meta.json, perhaps interrupted): "
                                f"run prepare.py")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get('format_version') != VERSION:
        raise ValueError(f"{meta_path}: format version {meta.get('format_version')}, expected {VERSION}; rerun prepare.py")
    tokens = read_tokens(os.path.join(data_dir, f'{split}.bin'))
    idx = np.load(os.path.join(data_dir, f'{split}.idx.npy'))
    expected_dtype = token_dtype(meta['vocab']['vocab_size'])
    if tokens.dtype != expected_dtype:
        raise ValueError(f"{data_dir}/{split}.bin holds {tokens.dtype} but the vocabulary of "
                         f"{meta['vocab']['vocab_size']} needs {np.dtype(expected_dtype).name}: stale files")
    n_examples = read_header(os.path.join(data_dir, f'{split}.bin'))['n_examples']
    if idx.ndim != 2 or idx.shape[1] != 4 or len(idx) != n_examples:
        raise ValueError(f"{data_dir}/{split}.idx.npy has shape {idx.shape}, expected ({n_examples}, 4): stale files")
    if len(idx) and idx[-1, 0] + idx[-1, 1] != len(tokens):
        raise ValueError(f"{data_dir}/{split}.idx.npy does not end where {split}.bin ends: stale files")
    return tokens, idx, meta
