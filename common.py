"""
What every script does the same way: choose the device and dtype, start up (threads, denormals), load a
checkpoint, and know the device's peak FLOP/s (for MFU).

    from common import load_checkpoint, start
    device = start(cfg['device'], cfg['threads'])
    model, tok, codec, ckpt = load_checkpoint('out/tiny/ckpt.pt', device)
"""
import json
import os
import time

import torch

from codec import codec_from_dict
from model import GPT, GPTConfig
from tokenizer import Tokenizer

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}

# -----------------------------------------------------------------------------
# device, dtype, start-up


def pick_device(device='auto'):
    """'auto' -> cuda, then mps, then cpu; anything else is taken as it is."""
    if device != 'auto':
        return device
    if torch.cuda.is_available():
        return 'cuda'
    if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
        return 'mps'
    return 'cpu'


def cpu_has_fast_bf16():
    """bf16 autocast pays on CPUs with AVX-512 (oneDNN's bf16 kernels); on AVX2-only CPUs it is emulated and
    measured 15-20x slower than fp32 per matmul, so 'auto' keeps fp32 there."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_dtype(name, device_type):
    """'auto' -> bfloat16 on CUDA and on CPUs with fast bf16, else float32; or a name from DTYPES."""
    if name == 'auto':
        fast = device_type == 'cuda' or (device_type == 'cpu' and cpu_has_fast_bf16())
        return torch.bfloat16 if fast else torch.float32
    if name not in DTYPES:
        raise ValueError(f"--dtype={name}: choose auto or one of {tuple(DTYPES)}")
    return DTYPES[name]


def start(device='auto', threads=0):
    """Script start-up: torch threads (0 keeps torch's default), no denormals (they slow the codec's convolutions
    on CPU), and the device. Returns the device string."""
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    return pick_device(device)

# -----------------------------------------------------------------------------
# checkpoints: train.py writes them, every other script reads them here


def model_from_checkpoint(ckpt, device='cpu'):
    """Rebuild a GPT from a checkpoint dict (train.py writes 'model_args' and 'model'), in eval mode."""
    model = GPT(GPTConfig(**ckpt['model_args']))
    model.load_state_dict(ckpt['model'])
    return model.to(device).eval()


def check_expected_vocab(tok, expect, path):
    """expect: 'encoding/layout' (e.g. 'gpt2/level'), or a JSON file holding a vocabulary description
    (a dataset's meta.json or Tokenizer.to_dict())."""
    have = tok.to_dict()
    if os.path.isfile(expect):
        with open(expect) as f:
            d = json.load(f)
        want = d.get('vocab', d)
    else:
        encoding, _, layout = expect.partition('/')
        want = dict(encoding=encoding, layout=layout or tok.layout)
    diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if diff:
        raise ValueError(f"{path}: the checkpoint's vocabulary differs from the expected {expect!r}: "
                         + ", ".join(f"{k}: checkpoint {a!r} vs expected {b!r}" for k, (a, b) in diff.items()))


def load_checkpoint(path, device='cpu', dtype='float32', need_codec=True, expect_vocab=None):
    """ckpt.pt -> (model, tok, codec, ckpt). The model is in eval mode on `device` with `dtype` weights;
    codec is None when need_codec is False or the checkpoint carries none."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} not found (train one with `python train.py config/train_tiny.py`)")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {tuple(DTYPES)}")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    missing = [k for k in ('model', 'model_args', 'vocab') if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a snacgpt checkpoint (missing {missing})")
    tok = Tokenizer.from_dict(ckpt['vocab'])
    if ckpt['model_args'].get('vocab_size') != tok.vocab_size:
        raise ValueError(f"{path}: the model has {ckpt['model_args'].get('vocab_size')} ids but the checkpoint's "
                         f"vocabulary has {tok.vocab_size}: model and vocabulary come from different runs")
    if expect_vocab:
        check_expected_vocab(tok, expect_vocab, path)
    try:
        model = model_from_checkpoint(ckpt, device)
    except RuntimeError as e:  # state_dict and model_args disagree
        raise ValueError(f"{path}: the weights do not fit the stored model_args ({str(e).splitlines()[0]})") from None
    model = model.to(DTYPES[dtype])
    codec = None
    if need_codec:
        if 'codec' not in ckpt:
            raise ValueError(f"{path}: the checkpoint carries no codec, so it cannot read or write audio")
        codec = codec_from_dict(ckpt['codec'], device=device if device != 'mps' else 'cpu')
    return model, tok, codec, ckpt

def speaks_word_by_word(ckpt, words=None):
    """Whether TTS should run word by word (sample.WordGrammar): as asked (True / False), else as the checkpoint
    learned it, from its data's mixture (prepare.py --tts_words)."""
    if words is not None:
        return bool(words)
    return ((ckpt.get('data_meta') or {}).get('mixture') or {}).get('tts_words', 0) > 0

# -----------------------------------------------------------------------------
# peak FLOP/s, for model FLOPs utilisation (MFU)

# dense peaks from NVIDIA's data sheets, FLOP/s: (bf16/fp16 tensor cores, fp32 without TF32), by exact model name.
# An unknown GPU gets no MFU figure: a neighbour's peak (an L40S is not an L4) would print a wrong one.
GPU_PEAK_FLOPS = {
    'H200': (989e12, 67e12), 'H100': (989e12, 67e12), 'H100 PCIe': (756e12, 51e12), 'A100': (312e12, 19.5e12),
    'L40S': (362e12, 91.6e12), 'L4': (121e12, 30.3e12), 'A10': (125e12, 31.2e12), 'RTX 4090': (165e12, 82.6e12),
}


def gpu_model(name):
    """torch.cuda.get_device_name() -> the key of GPU_PEAK_FLOPS it is, or None: 'NVIDIA H100 80GB HBM3' -> 'H100',
    'NVIDIA A100-SXM4-80GB' -> 'A100', 'NVIDIA GeForce RTX 4090' -> 'RTX 4090', 'NVIDIA L40S' -> 'L40S'."""
    words = name.replace('NVIDIA', '').replace('GeForce', '').replace('-', ' ').split()
    for n in (2, 1):  # the longer name first: 'H100 PCIe' before 'H100'
        if len(words) >= n and ' '.join(words[:n]) in GPU_PEAK_FLOPS:
            return ' '.join(words[:n])
    return None


def matmul_flops(a, b, min_seconds):
    """FLOP/s of a @ b (square), timed over at least 3 calls and min_seconds."""
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < min_seconds:
        a @ b
        n += 1
    return 2 * a.size(0) ** 3 * n / (time.perf_counter() - t0)


def cpu_peak_flops(dtype, repeats=3, min_seconds=0.05):
    """The best of `repeats` timings of a square matmul in `dtype` on torch's current threads (set them first, as
    training does): a peak, not an average, so that a moment of load elsewhere does not lower it (a single 0.3 s
    timing measured low often enough that training printed MFU above 100 %). 2048 rows for 16-bit types, whose
    oneDNN kernels reach their peak only on larger matrices (0.27 TFLOP/s at 1024 against 0.43 at 2048, bf16 on 2
    AVX-512 cores), 1024 for float32, at its peak there already."""
    size = 2048 if dtype in (torch.bfloat16, torch.float16) else 1024
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # the first call picks kernels
    return max(matmul_flops(a, b, min_seconds) for _ in range(repeats))


def peak_flops(device, dtype):
    """The device's peak FLOP/s in dtype: CUDA from the data sheet (None for a GPU not in GPU_PEAK_FLOPS), CPU
    measured (cpu_peak_flops)."""
    if device.startswith('cuda'):
        peaks = GPU_PEAK_FLOPS.get(gpu_model(torch.cuda.get_device_name(device)))
        return None if peaks is None else peaks[0] if dtype in (torch.bfloat16, torch.float16) else peaks[1]
    if device == 'cpu':
        return cpu_peak_flops(dtype)
    return None


def format_mfu(mfu):
    """'MFU 42.10%', or why there is no figure: a CPU peak is measured, and a measurement below what training
    then reaches cannot have been the peak."""
    if mfu is None:
        return 'MFU -'
    return f"MFU {mfu * 100:.2f}%" if mfu <= 1 else 'MFU - (peak unreliable)'
