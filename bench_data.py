"""
Speed and quality figures of the data path, printed for docs/results.md, never asserted:

    python bench_data.py --what=table      # streaming decode vs one-shot decode, by context frames (SNAC, stand-in)
    python bench_data.py --what=codec      # codec encode / decode / streaming speed (random-weight SNAC, stand-in)
    python bench_data.py --what=prepare    # MLS row parsing, espeak-ng synthesis and stand-in encoding speed
    python bench_data.py --what=table,codec --mel=data/tiny/codec.npz --threads=2   # with a fitted stand-in
    python bench_data.py --what=fit --data=data/hibari_w256_12k   # how k-means fits the stand-in, heard by Whisper

Without --mel a stand-in codec is fitted on 200 espeak-ng utterances of the tiny corpus first (a few seconds).
On a busy 2-core machine prefer --threads=1 (and OPENBLAS_NUM_THREADS=1): two-thread BLAS stalls when another
process holds a core.
"""
import csv
import json
import math
import os
import tempfile
import time

import numpy as np
import torch

import tinyspeech
from codec import (FIRST_FRAMES, KMEANS_ITERS, KMEANS_SAMPLE, LEFT_CONTEXT, MAX_STEP_FRAMES, RIGHT_CONTEXT, MelCodec,
                   SnacCodec, StreamingDecoder, log_mel, make_random_snac, mel_filterbank, random_levels)
from common import start
from configurator import apply_overrides, run
from eval import read_utterances, same_spelling, score_transcripts, source_audio, whisper_transcriber
from prepare import SEPARATORS, config as prepare_config, iter_rows, prepare_shard, resolve_options, validate_row
from tokenizer import CODEBOOK_SIZE, FRAME_LEN, FRAME_SAMPLES, LEVEL_RATES, SAMPLE_RATE, flatten

DEFAULTS = dict(
    what='table,codec,prepare',  # any of table, codec, prepare, fit, comma-separated
    mel='',                      # a fitted stand-in codec (.npz); '' fits one on 200 tiny-corpus utterances
    threads=2,                   # torch threads for the codec figures
    data='data/hibari_w256_12k', # fit: a corpus prepared with --source=tiny (its synthesis cache makes it fast)
    mel_codes=256,               # fit: codes per level
    fit_train=4000,              # fit: training utterances the codebooks are fitted on
    fit_val=60,                  # fit: held-out utterances encoded, decoded and heard
)

# -----------------------------------------------------------------------------
# codecs: streaming decode vs one-shot, speed, and how the stand-in is fitted

def snr_db(reference, estimate):
    noise = float(((reference - estimate) ** 2).sum())
    return float('inf') if noise == 0 else 10 * math.log10(float((reference ** 2).sum()) / noise)


def stream_decode(codec, levels, left=None, right=None, push_size=FRAME_LEN):
    """All of a StreamingDecoder's output for levels, pushed push_size codes at a time, then flushed."""
    flat, decoder = flatten(levels), StreamingDecoder(codec, left, right)
    chunks = [decoder.push(flat[i: i + push_size]) for i in range(0, len(flat), push_size)]
    return np.concatenate(chunks + [decoder.flush()])


def speech_corpus(n, seed=0):
    """n espeak-ng utterances of the tiny corpus (tinyspeech.py), 24 kHz."""
    utts = tinyspeech.make_corpus(n, 0, seed=seed)
    return tinyspeech.synthesize_corpus(utts, progress=False)


def fitted_mel(path, n_utts=200):
    """The MelCodec at path, or one fitted on n_utts utterances of the tiny corpus."""
    if path:
        return MelCodec.load(path)
    t0 = time.perf_counter()
    codec = MelCodec.fit(speech_corpus(n_utts, seed=1))
    print(f"(fitted a MelCodec on {n_utts} espeak-ng utterances in {time.perf_counter() - t0:.1f} s)")
    return codec


def snac_context_table(seconds=10.0, contexts=((0, 0), (1, 1), (1, 2), (2, 2), (3, 3), (4, 4))):
    """Windowed vs one-shot decode of random codes with a random-weight SNAC, noise off (and once with noise on)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_random_snac(tmp)
        codec, noisy = SnacCodec(folder, noise=False), SnacCodec(folder, noise=True)
    levels = random_levels(round(seconds / (FRAME_SAMPLES / SAMPLE_RATE)))
    reference = codec.decode(levels)
    print(f"SNAC 24 kHz, random weights, noise off: {len(levels[0])} random frames ({len(reference) / SAMPLE_RATE:.1f} s), "
          f"first block {FIRST_FRAMES} frame, then doubling up to {MAX_STEP_FRAMES}")
    print("| left / right context (frames) | max abs difference | SNR vs one-shot (dB) |")
    print("|---|---|---|")
    for left, right in contexts:
        streamed = stream_decode(codec, levels, left, right)
        assert len(streamed) == len(reference)
        print(f"| {left} / {right} | {np.abs(streamed - reference).max():.2e} | {snr_db(reference, streamed):.1f} |",
              flush=True)
    one_shot, again, streamed = noisy.decode(levels), noisy.decode(levels), stream_decode(noisy, levels)
    print(f"| {LEFT_CONTEXT} / {RIGHT_CONTEXT}, decoder noise on | {np.abs(streamed - one_shot).max():.2e} | "
          f"{snr_db(one_shot, streamed):.1f} (one-shot vs one-shot: {snr_db(one_shot, again):.1f}) |")


def mel_context_table(codec, wavs, rights=(0, 1, 2, 3), iters=(16, 32, 64)):
    """Block-wise Griffin-Lim (look-ahead `right` frames, `iters` iterations per block) against one
    Griffin-Lim run over each whole utterance: how well the resynthesis matches its target log-mel, and how
    close its waveform is to the global run's (phase retrieval has many answers, so the SNR is low for all)."""
    seconds = sum(len(w) for w in wavs) / SAMPLE_RATE
    levels = [codec.encode(w) for w in wavs]
    targets = [codec.dequantize(l) for l in levels]

    def log_mel_error(outs):
        return np.mean([np.abs(log_mel(y, codec.filterbank) - t).mean() for y, t in zip(outs, targets)])

    def run(c, whole):
        t0 = time.perf_counter()
        outs = [c.decode_block(l, 0, len(l[0]))[0] if whole else c.decode(l) for l in levels]
        return outs, (time.perf_counter() - t0) / seconds

    global_gl = MelCodec(codec.codebooks, codec.n_mels, 64, codec.gl_momentum)
    reference, rtf = run(global_gl, True)
    print(f"MelCodec on {len(wavs)} held-out espeak-ng utterances ({seconds:.1f} s); log-mel error: mean |log-mel of "
          f"the decoded audio - the dequantized log-mel| (nats)")
    print("| look-ahead (frames) | Griffin-Lim iterations | log-mel error | SNR vs global GL (dB) | streamed vs decode() max abs diff | decode RTF |")
    print("|---|---|---|---|---|---|")
    print(f"| whole utterance | 64 | {log_mel_error(reference):.3f} | - | - | {rtf:.3f} |")
    for n in iters:
        for right in rights:
            c = MelCodec(codec.codebooks, codec.n_mels, n, codec.gl_momentum, lookahead=right)
            outs, rtf = run(c, False)
            diff = max(np.abs(stream_decode(c, l, push_size=10) - y).max() for l, y in zip(levels[:2], outs))
            snr = np.mean([snr_db(r, y) for r, y in zip(reference, outs)])
            print(f"| {right} | {n} | {log_mel_error(outs):.3f} | {snr:.1f} | {diff:.1e} | {rtf:.3f} |", flush=True)


def median_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def stream_costs(codec, levels):
    """Seconds per decode call of a stream pushed one frame at a time: (first call that emitted audio,
    median seconds per emitted frame over the later calls). Warm: a first stream meets every window shape."""
    stream_decode(codec, [l[:rate * 40] for l, rate in zip(levels, LEVEL_RATES)])  # 40 frames: every window shape
    flat, decoder, first, per_frame = flatten(levels), StreamingDecoder(codec), None, []
    for i in range(0, len(flat), FRAME_LEN):
        t0 = time.perf_counter()
        out = decoder.push(flat[i: i + FRAME_LEN])
        dt = time.perf_counter() - t0
        if len(out):
            if first is None:
                first = dt
            else:
                per_frame.append(dt / (len(out) // FRAME_SAMPLES))
    return first, float(np.median(per_frame))


def bench_codec(threads=2, seconds=10.0, mel=None):
    print(f"torch {torch.__version__}, {threads} threads; load average {os.getloadavg()[0]:.1f} "
          f"(other processes on this machine slow every figure)")
    wav = np.concatenate(speech_corpus(4, seed=2))
    wav = np.resize(wav, round(seconds * SAMPLE_RATE)).astype(np.float32)  # repeat to `seconds` of speech
    levels = random_levels(math.ceil(len(wav) / FRAME_SAMPLES))
    with tempfile.TemporaryDirectory() as tmp:
        snac = SnacCodec(make_random_snac(tmp))
    snac.encode(wav), snac.decode(levels)  # warm up: the first calls pick kernels and allocate
    enc, dec = median_time(lambda: snac.encode(wav)), median_time(lambda: snac.decode(levels))
    print(f"SNAC (random weights, noise on) on {seconds:.0f} s: encode {enc:.2f} s (RTF {enc / seconds:.3f}), "
          f"decode {dec:.2f} s (RTF {dec / seconds:.3f})")
    first, per_frame = stream_costs(snac, levels)
    print(f"SNAC streaming ({LEFT_CONTEXT}/{RIGHT_CONTEXT} context, first {FIRST_FRAMES} frame then up to {MAX_STEP_FRAMES}): "
          f"first decode {first * 1e3:.0f} ms, then {per_frame * 1e3:.1f} ms per {FRAME_SAMPLES / SAMPLE_RATE * 1e3:.1f} ms frame")
    codec = fitted_mel(mel)
    utts = speech_corpus(100, seed=3)
    t = median_time(lambda: [codec.encode(w) for w in utts], 1)
    print(f"MelCodec encode: {sum(len(w) for w in utts) / SAMPLE_RATE / t:.0f} s of audio per second "
          f"({len(utts)} utterances)")
    levels = codec.encode(wav)
    dec = median_time(lambda: codec.decode(levels))
    first, per_frame = stream_costs(codec, levels)
    print(f"MelCodec decode ({codec.gl_iters} Griffin-Lim iterations per block, look-ahead {codec.stream_context[1]} "
          f"frame): {dec:.2f} s for {seconds:.0f} s (RTF {dec / seconds:.3f}); streaming: first decode "
          f"{first * 1e3:.0f} ms, then {per_frame * 1e3:.1f} ms per frame")

def corpus_audio(data_dir, split, n):
    """The first n utterances of a split of a prepared corpus: (records, their audio before the codec, 24 kHz), as
    eval.source_audio finds it (the synthesis cache of a tiny-source corpus, or a folder source's files)."""
    records = read_utterances(data_dir)
    if records is None:
        raise ValueError(f"--data={data_dir}: no utterances.jsonl there (prepare a corpus with --source=tiny)")
    with open(os.path.join(data_dir, 'meta.json')) as f:
        meta = json.load(f)
    chosen = [r for r in records if r['split'] == split][:n]
    found = [source_audio(r, data_dir, meta) for r in chosen]
    why = next((why for wav, why in found if wav is None), None)
    if why:
        raise ValueError(f"--data={data_dir}: {why}")
    return chosen, [wav for wav, _ in found]


def bench_fit(data_dir, n_codes, n_train, n_val):
    """How well k-means fits the stand-in's codebooks: a few settings, each fitted on the same training audio; the
    held-out audio's log-mel quantization error and, with Whisper, its resynthesis heard (the floor for any TTS)."""
    _, train_wavs = corpus_audio(data_dir, 'train', n_train)
    val, val_wavs = corpus_audio(data_dir, 'val', n_val)
    transcribe, ear = whisper_transcriber('auto', 'cpu')
    print(f"{data_dir}: fitted on {len(train_wavs)} training utterances, {n_codes} codes per level; "
          f"{len(val)} held-out utterances; ear: {ear}")
    filterbank = mel_filterbank()
    val_mels = [log_mel(w, filterbank) for w in val_wavs]
    refs = [same_spelling(r['text']) for r in val]
    print("| k-means iterations | vectors (at most) | fit (s) | held-out log-mel error (mean square) | Whisper CER / WER |")
    print("|---|---|---|---|---|")
    for iters, sample in ((4, 8 * n_codes), (10, 64 * n_codes), (KMEANS_ITERS, KMEANS_SAMPLE)):
        t0 = time.time()
        codec = MelCodec.fit(train_wavs, n_codes=n_codes, seed=0, kmeans_iters=iters, kmeans_sample=sample)
        t_fit = time.time() - t0
        codes = [codec.encode(w) for w in val_wavs]
        error = np.mean(np.concatenate([((codec.dequantize(c) - m) ** 2).mean(1) for c, m in zip(codes, val_mels)]))
        heard = ''
        if transcribe is not None:
            s = score_transcripts(refs, [same_spelling(transcribe(codec.decode(c))) for c in codes])
            heard = f"{s['cer']:.3f} / {s['wer']:.3f}"
        print(f"| {iters} | {sample:,} | {t_fit:.1f} | {error:.4f} | {heard} |", flush=True)


# -----------------------------------------------------------------------------
# data preparation speed

def synthetic_mls_rows(n_rows, seed=0, style='plain'):
    """Rows in the real schema with random codes: ~10 s of audio and a 150-character transcript each."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_rows):
        n_frames = int(rng.integers(60, 200))
        codes = rng.integers(0, CODEBOOK_SIZE, (n_frames, FRAME_LEN))
        if style == 'plain':
            s = ' '.join(map(str, codes.reshape(-1)))
        else:
            sep = '#' if style == 'hash' else SEPARATORS[1]
            s = ' '.join(f"{sep} " + ' '.join(map(str, f)) for f in codes) + f" {sep}"
        rows.append(dict(text=' '.join(['word'] * 30), snac24khz=s, text_description='a calm voice', speaker_id=str(i % 50)))
    return rows


def bench_prepare(n_rows=2000, n_utts=200):
    opts = resolve_options(dict(prepare_config, encoding='byte', source='mls'))
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for style in ('plain', 'hash', str(CODEBOOK_SIZE + 1)):
            path = os.path.join(tmp, f'part_{style}.csv')
            rows = synthetic_mls_rows(n_rows, style=style)
            with open(path, 'w', newline='') as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
            mb = os.path.getsize(path) / 1e6
            t0 = time.time()
            n_codes = sum(len(validate_row(r, opts)[1]) for _, r in iter_rows(path))
            t_parse = time.time() - t0
            t0 = time.time()
            done = prepare_shard(dict(name=f'bench_{style}', path=path, out=os.path.join(tmp, style), opts=opts,
                                      source=dict(path=path)))
            t_all = time.time() - t0
            n_tokens = sum(t['tokens'] for s in done['stats'].values() for t in s['tasks'].values())
            print(f"mls rows, separators={style:5s}: {mb:.1f} MB CSV; read+parse+validate {n_rows / t_parse:,.0f} rows/s "
                  f"{n_codes / t_parse / 1e6:.2f} M codes/s; + tokenize + write {n_rows / t_all:,.0f} rows/s "
                  f"{n_tokens / t_all / 1e6:.2f} M output tokens/s")
    utts = tinyspeech.make_corpus(n_utts, 0)
    t0 = time.time()
    wavs = tinyspeech.synthesize_corpus(utts, progress=False)
    t_synth = time.time() - t0
    seconds = sum(len(w) for w in wavs) / SAMPLE_RATE
    print(f"tiny corpus: espeak-ng ({tinyspeech.backend().name}) synthesizes {seconds / t_synth:,.0f} s of audio per s "
          f"({n_utts / t_synth:,.0f} utterances/s)")
    t0 = time.time()
    codec = MelCodec.fit(wavs, n_codes=CODEBOOK_SIZE, seed=0)
    t_fit = time.time() - t0
    t0 = time.time()
    for w in wavs:
        flatten(codec.encode(w))
    t_enc = time.time() - t0
    print(f"tiny corpus, stand-in codec: fit on {seconds:.0f} s of audio in {t_fit:.1f} s; encodes "
          f"{seconds / t_enc:,.0f} s of audio per s ({n_utts / t_enc:,.0f} utterances/s)")


def main(argv):
    cfg = apply_overrides(DEFAULTS, argv)
    what = cfg['what'].split(',')
    unknown = set(what) - {'table', 'codec', 'prepare', 'fit'}
    if unknown:
        raise ValueError(f"--what={cfg['what']}: unknown {sorted(unknown)}; choose from table, codec, prepare, fit")
    start('cpu', cfg['threads'])
    if 'table' in what:
        snac_context_table()
        mel_context_table(fitted_mel(cfg['mel']), speech_corpus(8, seed=4))
    if 'codec' in what:
        bench_codec(cfg['threads'], mel=cfg['mel'])
    if 'prepare' in what:
        bench_prepare()
    if 'fit' in what:
        bench_fit(cfg['data'], cfg['mel_codes'], cfg['fit_train'], cfg['fit_val'])


if __name__ == '__main__':
    run(main)
