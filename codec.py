"""
Speech <-> codes in SNAC's 24 kHz layout: audio I/O, the real SNAC codec, an offline stand-in codec
(MelCodec: a log-mel residual VQ with the same token layout) and a streaming decoder.

    python codec.py fit --out=/tmp/mel.npz a.wav b.wav ...  # fit the stand-in codec on some speech
    python codec.py encode in.wav /tmp/codes.npy --codec=mel:/tmp/mel.npz     # codes (7T,), depth-first
    python codec.py decode /tmp/codes.npy /tmp/out.wav --codec=mel:/tmp/mel.npz

--codec: snac (hubertsiuzdak/snac_24khz from the hub) | snac:<hub id or local folder> | mel:<codebooks.npz>
Speed and streaming-quality figures: bench_data.py.

Both codecs map 24 kHz audio to three code levels [L0 (T,), L1 (2T,), L2 (4T,)] of 0..4095, one coarse
frame (2048 samples) per L0 code; tokenizer.py holds that layout. encode() pads the audio with zeros to a
whole number of frames, T = ceil(len(wav) / 2048), as SNAC itself does, so decode() returns T * 2048 samples.
"""
import json
import math
import os
import warnings

import numpy as np
import soxr
import torch
from scipy.io import wavfile
from snac import SNAC
from snac.layers import NoiseBlock
from torch.nn.utils import parametrize

from configurator import apply_overrides, run
from tokenizer import (CODEBOOK_SIZE, FRAME_LEN, FRAME_SAMPLES, HOP, LEVEL_RATES, N_LEVELS, SAMPLE_RATE,
                       check_codes, flatten, unflatten)

# -----------------------------------------------------------------------------
# audio I/O

def resample(wav, sr_in, sr_out=SAMPLE_RATE):
    """float (N,) at sr_in -> float32 at sr_out, band-limited (soxr), not linear interpolation."""
    wav = np.asarray(wav, dtype=np.float32)
    if sr_in == sr_out or len(wav) == 0:
        return wav
    return soxr.resample(wav, sr_in, sr_out).astype(np.float32)


def load_audio(path):
    """A wav file (any rate, mono or stereo, int or float samples) -> float32 (N,) at 24 kHz, mono."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such audio file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', wavfile.WavFileWarning)  # unknown chunks (LIST, ...) are harmless
            sr, data = wavfile.read(path)
    except Exception as e:  # scipy raises ValueError for non-RIFF files, EOFError etc. for truncated ones
        raise ValueError(f"{path}: not a readable wav file ({type(e).__name__}: {e})") from None
    if data.dtype == np.uint8:  # 8-bit wav is unsigned
        wav = (data.astype(np.float32) - 128) / 128
    elif np.issubdtype(data.dtype, np.integer):
        wav = data.astype(np.float32) / -np.iinfo(data.dtype).min  # int16 / 32768, int32 (and 24-bit) / 2^31
    else:
        wav = data.astype(np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)  # downmix (N, channels)
    if wav.size == 0:
        raise ValueError(f"{path}: the file holds no audio samples")
    return resample(wav, sr, SAMPLE_RATE)


def write_wav(path, wav, sr=SAMPLE_RATE):
    """float (N,) in [-1, 1] -> 16-bit PCM wav; louder samples are clipped. Creates parent folders."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pcm = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1) * 32768, -32768, 32767).astype(np.int16)
    wavfile.write(path, sr, pcm)


def check_wav(wav):
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"expected a non-empty mono waveform (N,), got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise ValueError("the waveform holds NaN or infinite samples")
    return wav


def check_levels(levels):
    """[L0 (T,), L1 (2T,), L2 (4T,)] -> int64 arrays; ValueError for wrong lengths or codes (tokenizer's checks)."""
    return unflatten(flatten(levels))

# -----------------------------------------------------------------------------
# SNAC, the real codec (https://github.com/hubertsiuzdak/snac)

DEFAULT_SNAC = 'hubertsiuzdak/snac_24khz'
SNAC_24KHZ_CONFIG = dict(sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
                         decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=4096, codebook_dim=8,
                         vq_strides=[4, 2, 1], noise=True, depthwise=True)  # config.json of hubertsiuzdak/snac_24khz


def random_snac(seed=0):
    """SNAC(24 kHz config) with random weights: the real architecture and speed, tokens without content."""
    with torch.random.fork_rng():  # leave the caller's random state alone
        torch.manual_seed(seed)
        return SNAC(**SNAC_24KHZ_CONFIG).eval()


def make_random_snac(folder, seed=0):
    """Save random_snac(seed) as config.json + pytorch_model.bin, the layout SNAC.from_pretrained reads."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(SNAC_24KHZ_CONFIG, f, indent=1)
    torch.save(random_snac(seed).state_dict(), os.path.join(folder, 'pytorch_model.bin'))
    return folder


def disable_noise(model):
    """Replace the decoder's NoiseBlocks (x + randn * linear(x)) by identities: decoding becomes deterministic."""
    for seq in model.decoder.modules():
        if isinstance(seq, torch.nn.Sequential):
            for k, layer in enumerate(seq):
                if isinstance(layer, NoiseBlock):
                    seq[k] = torch.nn.Identity()
    return model


def fold_weight_norm(model):
    """Store every weight-normed conv's weight g * v / |v| once instead of recomputing it on each call:
    the same values, decode x1.13-1.25 faster on CPU."""
    for module in model.modules():
        if parametrize.is_parametrized(module, 'weight'):
            parametrize.remove_parametrizations(module, 'weight', leave_parametrized=True)
    return model


class SnacCodec:
    """SNAC 24 kHz. source: a hub id or a local folder with config.json + pytorch_model.bin (the same call).
    noise=False removes the decoder's random noise injection so that decoding is repeatable (SNAC's config has
    noise on; streamed and one-shot audio are only comparable without it)."""
    kind = 'snac'

    def __init__(self, source=DEFAULT_SNAC, device='cpu', noise=True):
        try:
            model = SNAC.from_pretrained(source)
        except Exception as e:  # no such folder, no such hub model, or no network (hub calls retry ~20 s first)
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0].rstrip('.')}"
            raise RuntimeError(
                f"could not load SNAC from {source!r} ({reason}). It must be a folder with config.json and "
                f"pytorch_model.bin, or a hub id this machine can download or has cached. Without the Hugging Face "
                f"hub, use the offline stand-in codec 'mel' (--codec=mel:<codebooks.npz>, fitted with "
                f"`python codec.py fit`; codec.MelCodec)") from e
        got = (model.sampling_rate, int(model.hop_length), list(model.vq_strides), model.codebook_size)
        want = (SAMPLE_RATE, HOP, [LEVEL_RATES[-1] // r for r in LEVEL_RATES], CODEBOOK_SIZE)
        if got != want:
            raise ValueError(f"{source}: SNAC with (rate, hop, vq strides, codebook size) {got}; "
                             f"the token layout needs {want}")
        if not noise:
            disable_noise(model)
        self.model = fold_weight_norm(model).to(device).eval()
        self.source, self.device, self.noise = source, device, noise
        self.stream_context = (LEFT_CONTEXT, RIGHT_CONTEXT)

    def encode(self, wav):
        """float (N,) at 24 kHz -> [L0 (T,), L1 (2T,), L2 (4T,)] int64, T = ceil(N / 2048)."""
        x = torch.from_numpy(check_wav(wav)).to(self.device)[None, None]  # (1, 1, N)
        with torch.inference_mode():
            codes = self.model.encode(x)  # SNAC pads on the right to a whole number of frames
        return [c[0].cpu().numpy().astype(np.int64) for c in codes]

    def decode(self, levels):
        """[L0 (T,), L1 (2T,), L2 (4T,)] -> float32 (T * 2048,)."""
        levels = check_levels(levels)
        if len(levels[0]) == 0:
            return np.zeros(0, dtype=np.float32)
        codes = [torch.from_numpy(l)[None].to(self.device) for l in levels]  # (1, rate * T) each
        with torch.inference_mode():
            wav = self.model.decode(codes)  # (1, 1, T * 2048)
        return wav[0, 0].float().cpu().numpy()

    def decode_block(self, levels, start, stop, state=None):
        """Frames [start, stop) of a window of codes; the frames around them are context. SNAC's decoder is
        a stack of convolutions, so a window needs no state beyond its codes."""
        return self.decode(levels)[start * FRAME_SAMPLES: stop * FRAME_SAMPLES], None

    def describe(self):
        return dict(kind='snac', source=self.source, stand_in=False, sample_rate=SAMPLE_RATE, noise=self.noise,
                    label=f"SNAC 24 kHz ({self.source})", frame_samples=FRAME_SAMPLES, codebook_size=CODEBOOK_SIZE)

# -----------------------------------------------------------------------------
# MelCodec, the offline stand-in: a residual VQ of log-mel frames at SNAC's three rates.
# Without the hub there are no trained SNAC weights, and a random-weight SNAC gives codes that carry no
# content (a 0.7 ms shift of the audio changes 99.6 % of them). Log-mel codes are stable under such shifts,
# so a small model can learn from them; the decoder (Griffin-Lim) is buzzy but followable.

N_MELS = 80                 # mel bands
N_FFT = 2 * HOP             # 1024: reconstructs better than 2048 here, and overlap-add becomes two half-frame sums
LOG_FLOOR = 1e-5            # log(max(mel, floor)): digital silence maps to one value
GL_ITERS = 64               # Griffin-Lim iterations per decoded block (the blocks overlap, see decode_block)
GL_MOMENTUM = 0.99          # fast Griffin-Lim (Perraudin et al. 2013): same cost per iteration, better phase
KMEANS_ITERS = 20           # Lloyd iterations after sampling the codebooks from the data
KMEANS_SAMPLE = 65536       # ... on at most this many vectors (256 per code at 256 codes; docs/results.md, Codecs)
MEL_RIGHT_CONTEXT = 1       # frames after a decoded block that its Griffin-Lim run sees (docs/results.md, Codecs)
PHASE_TABLE_FRAMES = 1024   # fixed random initial phases, indexed by hop frame: decoding is deterministic
LABEL = ("log-mel residual-VQ stand-in codec, not SNAC: 80 mel bands, hop 512 at 24 kHz, codes at SNAC's "
         "1:2:4 rates (L0 on 4-frame means, L1 on 2-frame means of the residual, L2 per frame), decoded with "
         "Griffin-Lim (buzzy)")


def mel_filterbank(n_mels=N_MELS, n_fft=N_FFT, sr=SAMPLE_RATE):
    """(n_mels, n_fft // 2 + 1) triangles of peak 1, evenly spaced on the HTK mel scale from 0 Hz to sr / 2."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = hz(np.linspace(0, mel(sr / 2), n_mels + 2))  # (n_mels + 2,) band edges in Hz
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))).astype(np.float32)


WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def stft(x):
    """(F + 1) * HOP samples -> (F, N_FFT // 2 + 1) complex: frame f covers samples [f * HOP, f * HOP + N_FFT)."""
    blocks = x.reshape(-1, HOP)  # (F + 1, HOP)
    frames = np.concatenate([blocks[:-1], blocks[1:]], axis=1) * WINDOW  # (F, N_FFT)
    return np.fft.rfft(frames, axis=1)


def istft(X):
    """Inverse of stft() in the least-squares sense (Griffin & Lim 1984): windowed overlap-add / sum of window^2."""
    frames = np.fft.irfft(X, n=N_FFT, axis=1).astype(np.float32) * WINDOW  # (F, N_FFT)
    out, norm = np.zeros((len(X) + 1, HOP), np.float32), np.zeros((len(X) + 1, HOP), np.float32)
    out[:-1] += frames[:, :HOP]
    out[1:] += frames[:, HOP:]
    norm[:-1] += WINDOW[:HOP] ** 2
    norm[1:] += WINDOW[HOP:] ** 2
    return (out / np.maximum(norm, 1e-3)).reshape(-1)  # ((F + 1) * HOP,)


def unit(X):
    """The phase of X as unit complex numbers (3x cheaper than exp(1j * angle(X)))."""
    return X / np.maximum(np.abs(X), 1e-8)


def log_mel(wav, filterbank):
    """float (N,) -> (4T, n_mels), T = ceil(N / 2048): hop frame f is centred on samples [f * HOP, (f + 1) * HOP)."""
    wav = check_wav(wav)
    T = math.ceil(len(wav) / FRAME_SAMPLES)
    half = (N_FFT - HOP) // 2  # 256 zeros on each side centre every frame on its hop
    x = np.pad(wav, (half, T * FRAME_SAMPLES - len(wav) + half))
    return np.log(np.maximum(np.abs(stft(x)) @ filterbank.T, LOG_FLOOR)).astype(np.float32)


def nearest(x, codebook, chunk=2048):
    """Index of the nearest codebook row (squared distance) for each row of x: (n, d), (K, d) -> (n,).
    In chunks of rows: the (n, K) distance matrix of a whole corpus would not fit in memory."""
    sq = (codebook ** 2).sum(1)  # (K,)
    return np.concatenate([np.argmin(sq - 2 * x[i: i + chunk] @ codebook.T, axis=1)
                           for i in range(0, len(x), chunk)] or [np.zeros(0, np.int64)])


class MelCodec:
    """Log-mel residual VQ in SNAC's token layout. Build with MelCodec.fit(wavs) or MelCodec.load(path)."""
    kind = 'mel'

    def __init__(self, codebooks, n_mels=N_MELS, gl_iters=GL_ITERS, gl_momentum=GL_MOMENTUM, lookahead=MEL_RIGHT_CONTEXT):
        self.codebooks = [np.ascontiguousarray(c, dtype=np.float32) for c in codebooks]  # per level (K_k, n_mels)
        if len(self.codebooks) != N_LEVELS or any(c.ndim != 2 or c.shape[1] != n_mels or not 0 < len(c) <= CODEBOOK_SIZE
                                                  for c in self.codebooks):
            raise ValueError(f"expected {N_LEVELS} codebooks of shape (<= {CODEBOOK_SIZE}, {n_mels}), "
                             f"got {[c.shape for c in self.codebooks]}")
        self.n_mels, self.gl_iters, self.gl_momentum = int(n_mels), int(gl_iters), float(gl_momentum)
        self.lookahead = int(lookahead)  # frames after a block that its Griffin-Lim run sees
        self.filterbank = mel_filterbank(self.n_mels)  # (n_mels, N_FFT // 2 + 1)
        self.inverse = np.linalg.pinv(self.filterbank).astype(np.float32)  # (N_FFT // 2 + 1, n_mels)
        phases = np.random.default_rng(0).uniform(-np.pi, np.pi, (PHASE_TABLE_FRAMES, N_FFT // 2 + 1))
        self.phase_table = np.exp(1j * phases).astype(np.complex64)  # (frames, bins)
        self.stream_context = (1, self.lookahead)  # one frame on the left: STFT frames straddle the block edge

    # --- quantization
    def encode(self, wav):
        """float (N,) at 24 kHz -> [L0 (T,), L1 (2T,), L2 (4T,)] int64, T = ceil(N / 2048)."""
        residual = log_mel(wav, self.filterbank)  # (4T, n_mels)
        levels = []
        for codebook, rate in zip(self.codebooks, LEVEL_RATES):
            group = LEVEL_RATES[-1] // rate  # hop frames per code: 4, 2, 1
            means = residual.reshape(-1, group, self.n_mels).mean(1)  # (rate * T, n_mels)
            codes = nearest(means, codebook)
            residual = residual - np.repeat(codebook[codes], group, axis=0)
            levels.append(codes.astype(np.int64))
        return levels

    def dequantize(self, levels):
        """[L0, L1, L2] -> (4T, n_mels) log-mel. A codebook with fewer than 4096 rows (fitted on little data)
        reads code c as row c mod rows, so every code a model can emit decodes."""
        return sum(np.repeat(cb[codes % len(cb)], LEVEL_RATES[-1] // rate, axis=0)
                   for cb, codes, rate in zip(self.codebooks, levels, LEVEL_RATES))

    @classmethod
    def fit(cls, wavs, n_codes=CODEBOOK_SIZE, seed=0, kmeans_iters=KMEANS_ITERS, kmeans_sample=KMEANS_SAMPLE, **kwargs):
        """Codebooks from the corpus, level by level on the residual of the levels before: n_codes vectors
        sampled from the data (fewer if it has fewer distinct ones), refined by k-means on a sample of the data."""
        if not 0 < n_codes <= CODEBOOK_SIZE:
            raise ValueError(f"n_codes must be in 1..{CODEBOOK_SIZE}, got {n_codes}")
        if len(wavs) == 0:
            raise ValueError("MelCodec.fit needs at least one waveform")
        rng = np.random.default_rng(seed)
        filterbank = mel_filterbank(kwargs.get('n_mels', N_MELS))
        residual = np.concatenate([log_mel(w, filterbank) for w in wavs])  # (4 * sum T, n_mels)
        codebooks = []
        for rate in LEVEL_RATES:
            group = LEVEL_RATES[-1] // rate
            means = residual.reshape(-1, group, len(filterbank)).mean(1)
            codebook = kmeans(means, n_codes, kmeans_iters, rng, kmeans_sample)
            residual = residual - np.repeat(codebook[nearest(means, codebook)], group, axis=0)
            codebooks.append(codebook)
        return cls(codebooks, **kwargs)

    # --- decoding: log-mel -> magnitude (pseudo-inverse of the filterbank) -> phase (Griffin-Lim)
    def decode(self, levels):
        """[L0 (T,), L1 (2T,), L2 (4T,)] -> float32 (T * 2048,). Decodes block by block exactly as
        StreamingDecoder does, so streamed audio equals this one (see decode_block)."""
        flat = flatten(levels)
        stream = StreamingDecoder(self)
        return np.concatenate([stream.push(flat), stream.flush()])

    def decode_block(self, levels, start, stop, state=None):
        """Samples of frames [start, stop) of a window of codes, and the state for the next block.

        Griffin-Lim is global and iterative, so a windowed run cannot match a run over the whole utterance;
        instead decoding is defined block by block (as RTISI-LA, Zhu et al. 2007, does per frame): each block's
        phase is found with the samples already emitted held fixed, so consecutive blocks join without seams
        and one-shot and streamed decoding are the same computation. state carries the last emitted samples,
        this block's guess of the samples after it (a warm start) and the hop-frame count."""
        levels = check_levels(levels)
        magnitude = np.maximum(np.exp(self.dequantize(levels)) @ self.inverse.T, 0)  # (4n, N_FFT // 2 + 1)
        fixed_len = N_FFT - HOP // 2  # 768: the samples before the block that frames reaching into it cover
        if state is None:  # the stream starts: the frames' zero padding before sample 0 is the fixed part
            if start != 0:
                raise ValueError("the first block of a stream must start at its first frame")
            first, fixed, guess, frame0 = 0, np.zeros((N_FFT - HOP) // 2, np.float32), np.zeros(0, np.float32), 0
        else:
            if start < 1:
                raise ValueError("MelCodec needs one frame of left context after the first block")
            first = LEVEL_RATES[-1] * start - 1  # the hop frame straddling the block's left edge
            fixed, guess, frame0 = state['fixed'], state['guess'], state['frame'] - 1
        mag = magnitude[first:]  # (F, bins): hop frames from `first` to the window's end
        frame_ids = (frame0 + np.arange(len(mag))) % PHASE_TABLE_FRAMES  # stream hop-frame index
        x = istft(mag * self.phase_table[frame_ids])  # ((F + 1) * HOP,) initial guess from fixed random phases
        n_fixed = len(fixed)
        x[n_fixed: n_fixed + len(guess)] = guess[: len(x) - n_fixed]  # the previous block's look-ahead, if any
        X, previous = stft(x), 0
        for _ in range(self.gl_iters):
            y = istft(mag * unit(X))
            y[:n_fixed] = fixed  # emitted samples stay as they are
            projected = stft(y)
            X = projected + self.gl_momentum * (projected - previous)  # fast Griffin-Lim
            previous = projected
        y = istft(mag * unit(X))
        y[:n_fixed] = fixed
        end = n_fixed + (stop - start) * FRAME_SAMPLES
        next_frame = (0 if state is None else state['frame']) + LEVEL_RATES[-1] * (stop - start)
        return y[n_fixed: end], dict(fixed=y[end - fixed_len: end], guess=y[end:], frame=next_frame)

    # --- description and storage
    def params(self):
        return dict(n_mels=self.n_mels, gl_iters=self.gl_iters, gl_momentum=self.gl_momentum, lookahead=self.lookahead)

    def describe(self):
        return dict(kind='mel', stand_in=True, label=LABEL, sample_rate=SAMPLE_RATE, frame_samples=FRAME_SAMPLES,
                    n_fft=N_FFT, hop=HOP, codebook_rows=[len(c) for c in self.codebooks], **self.params())

    def save(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'wb') as f:  # a file object: np.savez would append '.npz' to other names
            np.savez(f, **{f'codebook{k}': c for k, c in enumerate(self.codebooks)}, **self.params())

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such codec file (fit one with `python codec.py fit --out={path} ...`)")
        try:
            with np.load(path) as f:
                return cls([f[f'codebook{k}'] for k in range(N_LEVELS)],
                           **{k: f[k].item() for k in ('n_mels', 'gl_iters', 'gl_momentum', 'lookahead')})
        except (KeyError, OSError, ValueError) as e:
            raise ValueError(f"{path}: not a MelCodec file ({type(e).__name__}: {e})") from None


def kmeans(x, k, iters, rng, sample=KMEANS_SAMPLE):
    """(n, d) -> (min(k, distinct rows), d) centroids: k distinct rows sampled from x, then Lloyd iterations
    on a sample of at most `sample` rows (a centroid that loses all its points stays put)."""
    distinct = np.unique(x[rng.choice(len(x), min(len(x), 4 * k), replace=False)], axis=0)  # silence repeats
    if len(distinct) < k and len(x) > 4 * k:
        distinct = np.unique(x, axis=0)  # slow on a big corpus; rarely needed
    centroids = distinct[rng.choice(len(distinct), min(k, len(distinct)), replace=False)].copy()
    if len(x) > sample:
        x = x[rng.choice(len(x), sample, replace=False)]
    for _ in range(iters):
        assign = nearest(x, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, x)
        counts = np.bincount(assign, minlength=len(centroids))[:, None]
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids).astype(np.float32)
    return centroids.astype(np.float32)

# -----------------------------------------------------------------------------
# rebuilding a codec from a name or from the record a checkpoint carries

def codec_to_dict(codec):
    """Everything needed to rebuild the codec: the source for SNAC, the codebooks (numpy) for MelCodec."""
    if codec.kind == 'snac':
        return dict(kind='snac', source=codec.source, noise=codec.noise)
    return dict(kind='mel', codebooks=[c.copy() for c in codec.codebooks], **codec.params())


def codec_from_dict(d, device='cpu'):
    if d.get('kind') == 'snac':
        return SnacCodec(d['source'], device=device, noise=d.get('noise', True))
    if d.get('kind') == 'mel':
        return MelCodec([np.asarray(c) for c in d['codebooks']], **{k: v for k, v in d.items() if k not in ('kind', 'codebooks')})
    raise ValueError(f"unknown codec record kind {d.get('kind')!r}; expected 'snac' or 'mel'")


def load_codec(spec='snac', device='cpu'):
    """'snac' (hubertsiuzdak/snac_24khz) | 'snac:<hub id or folder>' | 'mel:<codebooks.npz>'."""
    kind, _, arg = spec.partition(':')
    if kind == 'snac':
        return SnacCodec(arg or DEFAULT_SNAC, device=device)
    if kind == 'mel' and arg:
        return MelCodec.load(arg)
    if kind == 'mel':
        raise ValueError("the mel codec needs its codebooks: --codec=mel:<codebooks.npz> "
                         "(fit one with `python codec.py fit --out=mel.npz a.wav b.wav ...`)")
    raise ValueError(f"unknown codec {spec!r}; use snac, snac:<hub id or folder> or mel:<codebooks.npz>")

# -----------------------------------------------------------------------------
# streaming decode: emit the middle of a window of frames, with context frames on each side
# One frame's codes move SNAC's output about 2.3 frames each side (its decoder's receptive field), so
# 3 frames of context on each side reproduce the one-shot decode up to float rounding (docs/results.md, Codecs).

LEFT_CONTEXT = 3     # SNAC: frames of codes before the emitted ones
RIGHT_CONTEXT = 3    # SNAC: frames after them (look-ahead: audio lags the codes by this many frames)
FIRST_FRAMES = 1     # the first decode emits one frame: audio starts as early as possible
MAX_STEP_FRAMES = 16  # later decodes emit as many frames as all before them, up to 16 (1, 1, 2, 4, 8, 16, 16...):
# SNAC's window costs in proportion to its frames, context included (~23 ms a frame on 2 CPU cores), so a steady
# 3+16+3 window spends 1.4 frames of work per emitted frame where 3+4+3 spent 2.5; and the audio already out
# always covers the time the next, larger block takes while the stream runs faster than real time


class StreamingDecoder:
    """Codes in, audio out. push() takes any number of flat codes (depth-first, 7 per frame; a partial frame
    waits for the rest) and returns the samples that are now final; flush() returns the rest and readies the
    decoder for a new utterance. All outputs together equal codec.decode() of the same codes: exactly for
    MelCodec, to float rounding for SNAC with noise off at 3/3 frames of context (fewer frames trade
    accuracy for latency). left/right default to the codec's own (codec.stream_context); a MelCodec streamed
    with another right than its lookahead sounds as good but differs from its decode()."""

    def __init__(self, codec, left=None, right=None):
        self.codec = codec
        self.left = codec.stream_context[0] if left is None else int(left)
        self.right = codec.stream_context[1] if right is None else int(right)
        if self.left < 0 or self.right < 0:
            raise ValueError(f"context frames must be >= 0, got left={left} right={right}")
        if codec.kind == 'mel' and self.left < 1:
            raise ValueError("MelCodec streaming needs left >= 1: STFT frames straddle the block edge")
        self.reset()

    def reset(self):
        self.pending = np.zeros(0, np.int64)  # codes of an unfinished frame
        self.frames = np.zeros((0, FRAME_LEN), np.int64)  # (n, 7) frames kept, the first is frame self.offset
        self.offset = 0  # stream index of self.frames[0]
        self.done = 0  # frames whose samples were returned
        self.state = None  # the codec's carry-over between blocks (MelCodec), None for SNAC

    @property
    def n_frames(self):
        return self.offset + len(self.frames)

    def next_stop(self):
        return self.done + (FIRST_FRAMES if self.done == 0 else min(self.done, MAX_STEP_FRAMES))

    def push(self, flat_codes):
        codes = np.concatenate([self.pending, check_codes(np.asarray(flat_codes).reshape(-1), 'streamed codes')])
        whole = len(codes) - len(codes) % FRAME_LEN
        self.frames = np.concatenate([self.frames, codes[:whole].reshape(-1, FRAME_LEN)])
        self.pending = codes[whole:]
        out = []
        while self.n_frames >= self.next_stop() + self.right:
            out.append(self._emit(self.next_stop()))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def flush(self):
        if len(self.pending):
            warnings.warn(f"dropped a partial frame of {len(self.pending)} codes at the end of the stream")
        out = []
        while self.done < self.n_frames:
            out.append(self._emit(min(self.next_stop(), self.n_frames)))
        self.reset()
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _emit(self, stop):
        start, end = self.done, min(stop + self.right, self.n_frames)
        lo = max(start - self.left, 0)
        window = self.frames[lo - self.offset: end - self.offset]  # (end - lo, 7)
        wav, self.state = self.codec.decode_block(unflatten(window.reshape(-1)), start - lo, stop - lo, self.state)
        self.done = stop
        keep = max(self.done - self.left, 0)  # forget frames no later window reaches
        self.frames, self.offset = self.frames[keep - self.offset:], keep
        return wav


def random_levels(n_frames, seed=0):
    """Random codes in the layout, [L0 (n,), L1 (2n,), L2 (4n,)]: for tests and benchmarks of shapes and speed."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, CODEBOOK_SIZE, rate * n_frames) for rate in LEVEL_RATES]


CLI_DEFAULTS = dict(
    codec='snac',         # encode, decode: snac | snac:<hub id or folder> | mel:<codebooks.npz>
    out='',               # fit: where the stand-in's codebooks go (.npz)
    n_codes=CODEBOOK_SIZE,  # fit: codes per level (at most 4096)
    seed=0,               # fit
)
USAGE = ("usage: python codec.py fit --out=mel.npz a.wav b.wav ... | encode in.wav codes.npy [--codec=...] | "
         "decode codes.npy out.wav [--codec=...]")


def main(argv):
    words = [a for a in argv if not a.startswith('--')]
    cfg = apply_overrides(CLI_DEFAULTS, [a for a in argv if a.startswith('--')])
    command, files = (words[0], words[1:]) if words else ('', [])
    if command == 'fit' and files and cfg['out']:
        codec = MelCodec.fit([load_audio(p) for p in files], cfg['n_codes'], cfg['seed'])
        codec.save(cfg['out'])
        print(f"{cfg['out']}: {codec.describe()}")
    elif command == 'encode' and len(files) == 2:
        levels = load_codec(cfg['codec']).encode(load_audio(files[0]))
        np.save(files[1], flatten(levels))
        print(f"{files[1]}: {len(levels[0])} frames, {len(levels[0]) * FRAME_LEN} codes")
    elif command == 'decode' and len(files) == 2:
        wav = load_codec(cfg['codec']).decode(unflatten(np.load(files[0])))
        write_wav(files[1], wav)
        print(f"{files[1]}: {len(wav) / SAMPLE_RATE:.2f} s")
    else:
        raise ValueError(f"{' '.join(argv) or 'no command'}: {USAGE}")


if __name__ == '__main__':
    run(main)
