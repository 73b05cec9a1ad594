"""Small synthetic datasets in prepare.py's format, for tests of training, evaluation and sweeps."""
import json
import os

import dataclasses

import numpy as np
import torch

import codec as codec_lib
from model import GPT, GPTConfig

from tokenfile import VERSION, write_tokens
from tokenizer import FRAME_LEN, SAMPLE_RATE, TASKS, Tokenizer, token_dtype

WORDS = ['red', 'blue', 'cat', 'dog', 'runs', 'sits', 'now', 'here']


def text_codes(text):
    """Audio codes that follow from the text, one frame per character: a learnable 'speech'."""
    frames = [[(ord(c) * 7 + p * 131) % 4096 for p in range(FRAME_LEN)] for c in text]
    return np.array(frames, dtype=np.int64).reshape(-1)


def write_synthetic_dataset(data_dir, n_train=60, n_val=16, seed=0, layout='level'):
    """TTS, ASR and text examples over a tiny word list; returns the Tokenizer."""
    tok = Tokenizer('byte', layout)
    rng = np.random.default_rng(seed)
    os.makedirs(data_dir, exist_ok=True)
    for split, n in (('train', n_train), ('val', n_val)):
        ids, rows, start = [], [], 0
        for _ in range(n):
            text = ' '.join(rng.choice(WORDS, 3))
            for task, (x, mask) in zip(TASKS, (tok.tts(text, text_codes(text)), tok.asr(text_codes(text), text),
                                              tok.plain(text))):
                ids.append(x)
                rows.append([start, len(x), TASKS.index(task), int(np.argmax(mask))])
                start += len(x)
        write_tokens(os.path.join(data_dir, f'{split}.bin'), np.concatenate(ids), tok.vocab_size, len(rows))
        np.save(os.path.join(data_dir, f'{split}.idx.npy'), np.array(rows, dtype=np.int64))
    meta = dict(format_version=VERSION, vocab=tok.to_dict(), dtype=np.dtype(token_dtype(tok.vocab_size)).name,
                codec=dict(kind='synthetic', source='tests/fixtures.py', stand_in=False, label='synthetic codes'))
    with open(os.path.join(data_dir, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    return tok


def sine_sweep(seconds=1.0, sr=SAMPLE_RATE):
    t = np.arange(int(seconds * sr)) / sr
    noise = 0.02 * np.random.default_rng(0).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t) + noise).astype(np.float32)


def tiny_checkpoint(path, layout='level', block_size=256, seed=0):
    """A random 2-layer GPT, the byte vocabulary and a MelCodec fitted on a second of sine sweep, saved as
    train.py saves checkpoints."""
    tok = Tokenizer('byte', layout)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32))
    codec = codec_lib.MelCodec.fit([sine_sweep()], n_codes=64)
    torch.save(dict(model=model.state_dict(), model_args=dataclasses.asdict(model.config), vocab=tok.to_dict(),
                    codec=codec_lib.codec_to_dict(codec), codec_info=codec.describe(), step=0), path)
    return path
