"""
Sample from a trained checkpoint: text to speech, speech to text, text continuation, or raw ids.
Everything (model, vocabulary, codec) comes from the checkpoint.

    python sample.py --ckpt=out/tiny/ckpt.pt --mode=tts --text="hello there" --out=out/samples
    python sample.py --ckpt=out/tiny/ckpt.pt --mode=tts --text="hello there" --text="good morning" \\
        --desc="a steady, mid-pitched male voice with a Scottish accent" --temperature=0.8 --top_k=200 --max_seconds=6
    python sample.py --ckpt=out/tiny/ckpt.pt --mode=tts --file=prompts.txt     # one prompt per line ("desc<TAB>text" also works)
    python sample.py --ckpt=out/tiny/ckpt.pt --mode=asr --wav=speech.wav      # greedy transcript
    python sample.py --ckpt=out/tiny/ckpt.pt --mode=text --text="the cat" --max_new_tokens=100
    python sample.py --ckpt=out/tiny/ckpt.pt --mode=raw --prompt_ids=256,1,2   # ids in, ids (and their reading) out
    python sample.py --ckpt=out/qa/ckpt.pt --mode=chat --turn=question.wav --turn="What pet does Pia have?" --speak=True
    python sample.py --ckpt=out/qa/ckpt.pt --mode=chat --file=chat.txt    # lines "user: text or a .wav", "assistant: ..."

--text, --desc, --wav and --prompt_ids may be repeated: the prompts run as one left-padded batch
(--batch_size at a time). Writes <out>/<mode>_<i>.wav for audio and <out>/<mode>.json with the prompts,
generated ids, durations and timings. In chat mode each --turn (a text, or a .wav file) is the user's next turn of
one conversation, answered in order with the whole conversation in the context (stream.py --mode=chat talks live).

Decoding is constrained by the audio frame grammar (FrameGrammar): inside an audio span each frame position
may only take its own code range, and a span ends only at a frame boundary, so any checkpoint, even an
untrained one, writes audio that the codec decodes.
"""
import json
import os
import time
import warnings

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')  # before numpy loads OpenBLAS: see stream.py

import numpy as np
import torch

from codec import load_audio, write_wav
from common import load_checkpoint, speaks_word_by_word, start
from configurator import apply_overrides, run
from generate import check_sampling, compile_decoding, generate_tokens
from tokenizer import FRAME_LEN, FRAME_SECONDS, ROLES, flatten, unflatten

# -----------------------------------------------------------------------------
# the audio frame grammar, as a logits hook for generate.generate_tokens

N_AUDIO_STATES = FRAME_LEN          # states 0..6: inside an audio span at that frame position, no end allowed
MAY_END = FRAME_LEN                 # at a frame boundary: a new frame or the end of the span
MUST_END = FRAME_LEN + 1            # at a frame boundary with max_frames reached: only the end
OUTSIDE = FRAME_LEN + 2             # outside any audio span
DONE = FRAME_LEN + 3                # after <eos>: generate_tokens repeats <eos>; the mask agrees
N_STATES = FRAME_LEN + 4
WANTS = ('audio', 'text', 'any', 'written')


class FrameGrammar:
    """logits_hook(logits (B, V), seq (B, t)) -> masked logits, for generate.generate_tokens.

    want='audio' (TTS): after the prompt's <audio>, only audio codes in frame order, and <eos> at a frame
        boundary once min_frames frames are out (forced at max_frames).
    want='text' (ASR, text continuation): only text ids and <eos>.
    want='written' (a chat answer in writing): text ids, <text> (a written thought, then the answer) and <eos>.
    want='any' (raw): anything, but inside an audio span the frame grammar holds and the span may end (<eos>,
        <text>, <desc>, a role marker) only at a frame boundary; outside audio spans audio codes are masked.
    The masks are built once as a (N_STATES, V) table of 0 / -inf; each call tracks every row's state from the
    tokens it has not seen yet and adds one row of the table per sequence."""

    def __init__(self, tok, want='audio', min_frames=1, max_frames=None, device='cpu'):
        if want not in WANTS:
            raise ValueError(f"unknown grammar target {want!r}; choose one of {WANTS}")
        self.tok, self.want = tok, want
        self.min_frames, self.max_frames = int(min_frames), max_frames
        self.table = self.build_table(tok, want).to(device)  # (N_STATES, V)
        allowed = [torch.isfinite(row).nonzero()[:, 0] for row in self.table.cpu()]
        self.bounds = [(int(a[0]), int(a[-1]) + 1) for a in allowed]  # per state: first and last legal id + 1
        self.seen = 0  # tokens of seq already folded into the state
        self.rows = None  # per row: [in_audio, position, frames, done]

    @staticmethod
    def build_table(tok, want):
        V = tok.vocab_size
        allow = torch.zeros(N_STATES, V, dtype=torch.bool)
        for p in range(FRAME_LEN):
            lo, hi = tok.legal_audio_range(p)
            allow[p, lo:hi] = True
        if want == 'any':  # any special but <audio> (no audio inside audio) and <pad> (never generated)
            ends = [i for name, i in tok.special.items() if name not in ('<audio>', '<pad>')]
        else:
            ends = [tok.eos]
        allow[MAY_END] = allow[0]
        allow[MAY_END, ends] = True
        allow[MUST_END, ends] = True
        if want in ('text', 'written'):
            allow[OUTSIDE, :tok.n_text] = True
            allow[OUTSIDE, tok.eos] = True
            allow[OUTSIDE, tok.text] = want == 'written'
        elif want == 'audio':
            allow[OUTSIDE, tok.audio] = True  # a TTS prompt ends with <audio>; if not, open the span
        else:
            allow[OUTSIDE, :tok.audio_offset] = True
            allow[OUTSIDE, tok.pad] = False
        allow[DONE, tok.eos] = True
        return torch.zeros(N_STATES, V).masked_fill_(~allow, float('-inf'))

    def step(self, row, i):
        """Fold token i into a row's [in_audio, position, frames, done]."""
        tok = self.tok
        if row[3]:
            return
        if i == tok.eos:
            row[3] = True
        elif i == tok.audio:
            row[0], row[1], row[2] = True, 0, 0
        elif row[0] and tok.audio_offset <= i < tok.vocab_size:
            row[1] = (row[1] + 1) % FRAME_LEN
            row[2] += row[1] == 0
        elif i != tok.pad:  # text or another marker closes the audio span; left padding changes nothing
            row[0] = False

    def state(self, row):
        in_audio, position, frames, done = row
        if done:
            return DONE
        if not in_audio:
            return OUTSIDE
        if position:
            return position
        if self.max_frames is not None and frames >= self.max_frames:
            return MUST_END
        return MAY_END if frames >= self.min_frames else 0

    def fold(self, seq):
        """Bring every row's state up to date with the tokens of seq (B, t) not seen yet."""
        if self.rows is None:
            self.rows = [[False, 0, 0, False] for _ in range(seq.size(0))]
        for row, new in zip(self.rows, seq[:, self.seen:].tolist()):
            for i in new:
                self.step(row, i)
        self.seen = seq.size(1)

    def head_rows(self, seq):
        """(lo, hi): every id that can be legal after seq lies in lo..hi-1, so the model need not compute the others
        (generate.generate_tokens asks before each step). Inside an audio span that is one code range."""
        self.fold(seq)
        bounds = [self.bounds[self.state(row)] for row in self.rows]
        return min(lo for lo, _ in bounds), max(hi for _, hi in bounds)

    def __call__(self, logits, seq):
        self.fold(seq)
        states = [self.state(row) for row in self.rows]
        if len(states) == 1:
            return logits + self.table[states[0]]  # (1, V) + (V,): no gather for a single sequence
        return logits + self.table[torch.tensor(states, device=logits.device)]  # (B, V)

class WordGrammar:
    """logits_hook for word-interleaved TTS (tokenizer.tts_words): the model speaks one word at a time and ends it
    with <text> at a frame boundary; the hook then forces the next word's text and <audio>, so the words spoken are
    always the ones asked for, in order. After the last word, <eos> ends the audio. words: one word list per row; each
    prompt holds its first word already (tokenizer.tts_words_prompt). Each word gets at least one frame and at most
    max_word_frames; the whole utterance at least min_frames and at most max_frames."""

    def __init__(self, tok, words, min_frames=1, max_frames=None, max_word_frames=None):
        self.tok, self.words = tok, [list(w) for w in words]
        self.min_frames, self.max_frames, self.max_word_frames = int(min_frames), max_frames, max_word_frames
        self.l0 = tok.legal_audio_range(0)
        self.rows = [dict(word=0, forced=[], position=0, word_frames=0, frames=0, done=False) for _ in self.words]
        self.seen = None  # tokens of seq already folded in; the prompt is never folded

    def step(self, k, i):
        r, tok = self.rows[k], self.tok
        if r['done']:
            return
        if r['forced']:  # the hook allowed nothing else
            r['forced'].pop(0)
            if i == tok.audio:
                r['position'] = r['word_frames'] = 0
        elif i == tok.eos:
            r['done'] = True
        elif i == tok.text:  # the model ended a word: the next one's text comes, then its audio
            r['word'] += 1
            r['forced'] = tok.encode_text(' ' + self.words[k][r['word']]) + [tok.audio]
        else:  # an audio code
            r['position'] = (r['position'] + 1) % FRAME_LEN
            if r['position'] == 0:
                r['word_frames'] += 1
                r['frames'] += 1

    def allowed(self, k):
        """[(lo, hi)] id ranges row k may take next."""
        r, tok = self.rows[k], self.tok
        if r['done']:
            return [(tok.eos, tok.eos + 1)]
        if r['forced']:
            return [(r['forced'][0], r['forced'][0] + 1)]
        if r['position']:
            return [tok.legal_audio_range(r['position'])]
        last = r['word'] == len(self.words[k]) - 1
        if self.max_frames is not None and r['frames'] >= self.max_frames:
            return [(tok.eos, tok.eos + 1)]
        if self.max_word_frames is not None and r['word_frames'] >= self.max_word_frames:
            return [(tok.eos, tok.eos + 1) if last else (tok.text, tok.text + 1)]
        out = [self.l0]
        if r['word_frames'] >= 1 and not last:
            out.append((tok.text, tok.text + 1))
        if r['word_frames'] >= 1 and last and r['frames'] >= self.min_frames:
            out.append((tok.eos, tok.eos + 1))
        return out

    def fold(self, seq):
        if self.seen is None:
            self.seen = seq.size(1)
        for k, new in enumerate(seq[:, self.seen:].tolist()):
            for i in new:
                self.step(k, i)
        self.seen = seq.size(1)

    def head_rows(self, seq):
        self.fold(seq)
        ranges = [x for k in range(len(self.rows)) for x in self.allowed(k)]
        return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)

    def __call__(self, logits, seq):
        self.fold(seq)
        mask = torch.full_like(logits, float('-inf'))
        for k in range(len(self.rows)):
            for lo, hi in self.allowed(k):
                mask[k, lo:hi] = 0.0
        return logits + mask

# -----------------------------------------------------------------------------
# batched, grammar-constrained generation

def left_pad(prompts, pad_id):
    """list of id lists -> idx (B, T) long and valid (B, T) bool, or None when all have the same length."""
    T = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), T, dtype=torch.bool)
    for b, p in enumerate(prompts):
        idx[b, T - len(p):] = torch.as_tensor(p, dtype=torch.long)
        valid[b, T - len(p):] = True
    return idx, (None if bool(valid.all()) else valid)


def check_prompt_ids(tok, prompt, block_size, what):
    bad = [i for i in prompt if not 0 <= int(i) < tok.vocab_size]
    if bad:
        raise ValueError(f"{what}: id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1}); "
                         f"ids from another vocabulary?")
    if len(prompt) == 0:
        raise ValueError(f"{what}: the prompt is empty")
    if len(prompt) >= block_size:
        raise ValueError(f"{what}: the prompt is {len(prompt)} tokens, the model's context is {block_size}: "
                         f"nothing fits after it")


def generate_ids(model, tok, prompts, want, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                 min_frames=1, max_frames=None, grammar=None):
    """Generate for a batch of prompts (id lists) under FrameGrammar(want), or under `grammar` when given. Returns
    (rows, stats): rows holds the new ids of each prompt, <eos> included when emitted; stats has the batch's timings."""
    device = model.wte.weight.device
    idx, valid = left_pad(prompts, tok.pad)
    idx = idx.to(device)
    valid = None if valid is None else valid.to(device)
    grammar = grammar or FrameGrammar(tok, want, min_frames, max_frames, device)
    rows, finished = [[] for _ in prompts], [False] * len(prompts)
    t0 = time.perf_counter()
    t_first = None
    for nxt in generate_tokens(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                               seed=seed, logits_hook=grammar, stop_token=tok.eos, valid=valid):
        for b, i in enumerate(nxt.tolist()):
            if not finished[b]:
                rows[b].append(i)
                finished[b] = i == tok.eos
        t_first = t_first or time.perf_counter()
    t1 = time.perf_counter()
    n_new = sum(len(r) for r in rows)
    stats = dict(batch_size=len(prompts), padded_prompt_tokens=idx.size(1), batch_new_tokens=n_new,
                 time_to_first_token_s=(t_first or t1) - t0, generate_s=t1 - t0, tokens_per_s=n_new / max(t1 - t0, 1e-9))
    return rows, stats


def budget(n_prompt, max_new, block_size, what):
    """max_new capped to what the context leaves after the prompt (with a warning)."""
    room = block_size - n_prompt
    if max_new > room:
        warnings.warn(f"{what}: {n_prompt} prompt tokens + {max_new} new tokens exceed the model's context of "
                      f"{block_size}; generating at most {room}")
    return min(max_new, room)


def in_batches(items, batch_size):
    for i in range(0, len(items), batch_size):
        yield items[i:i + batch_size]

# -----------------------------------------------------------------------------
# the tasks, importable

def tts(model, tok, texts, descs=None, max_seconds=10.0, temperature=1.0, top_k=None, top_p=None, seed=None,
        min_frames=1, batch_size=16, return_info=False, words=False, max_word_seconds=2.0, prefixes=None):
    """Text to speech. texts: list of str; descs: None, one str for all, or a list (None entries allowed).
    words: speak word by word (WordGrammar), for a model trained on word-interleaved TTS (prepare.py --tts_words),
    each word at most max_word_seconds. prefixes: ids before each prompt (chat: the conversation so far, so the text
    is spoken as the assistant's answer). Returns a list of flat raw codes (7T,) per text, whole frames only
    (codec.decode(unflatten(c)) gives T * FRAME_SAMPLES samples); with return_info, (codes, info) where info is one
    dict per text (prompt and generated ids, frames, seconds, timings)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if descs is None or isinstance(descs, str):
        descs = [descs] * len(texts)
    if len(descs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(descs)} descriptions")
    for k, t in enumerate(texts):
        if not t or not t.strip():
            raise ValueError(f"text {k} is empty: there is nothing to say")
    block = model.config.block_size
    max_frames = max(1, int(round(max_seconds / FRAME_SECONDS)))
    codes, info = [], []
    for chunk in in_batches(list(range(len(texts))), batch_size):
        word_lists = [texts[k].split() for k in chunk]
        prompts = [(list(prefixes[k]) if prefixes is not None else []) +
                   (tok.tts_words_prompt(w, descs[k]) if words else tok.tts_prompt(texts[k], descs[k])).tolist()
                   for k, w in zip(chunk, word_lists)]
        for k, p in zip(chunk, prompts):
            check_prompt_ids(tok, p, block, f"text {k}")
        room_frames = (block - max(len(p) for p in prompts) - 1) // FRAME_LEN  # the last token is <eos>
        if room_frames < min_frames:
            raise ValueError(f"the longest prompt of this batch is {max(len(p) for p in prompts)} tokens; the model's "
                             f"context of {block} tokens leaves room for {room_frames} audio frames")
        frames = min(max_frames, room_frames)
        if frames < max_frames:
            warnings.warn(f"max_seconds={max_seconds} capped to {frames * FRAME_SECONDS:.2f} s: the model's context "
                          f"is {block} tokens")
        n_new = frames * FRAME_LEN + 1
        grammar = None
        if words:  # room for the later words' forced text: <text>, the word, <audio>
            n_new += max(sum(len(tok.encode_text(' ' + w)) + 2 for w in ws[1:]) for ws in word_lists)
            n_new = min(n_new, block - max(len(p) for p in prompts))
            grammar = WordGrammar(tok, word_lists, min_frames, frames, max(1, round(max_word_seconds / FRAME_SECONDS)))
        rows, stats = generate_ids(model, tok, prompts, 'audio', n_new, temperature, top_k, top_p,
                                   seed, min_frames=min_frames, max_frames=frames, grammar=grammar)
        for k, p, row in zip(chunk, prompts, rows):
            flat = audio_of(tok, row)
            codes.append(flat)
            info.append(dict(mode='tts', text=texts[k], desc=descs[k], prompt_ids=p, generated_ids=row,
                             frames=len(flat) // FRAME_LEN, seconds=len(flat) // FRAME_LEN * FRAME_SECONDS,
                             hit_max=len(flat) // FRAME_LEN >= frames, batch_start=chunk[0], **stats))
    return (codes, info) if return_info else codes


def audio_of(tok, row):
    """The audio codes (7T,) of a generated TTS row, its words' spans joined when it was spoken word by word (the
    grammar made every span whole frames in the right ranges)."""
    pieces, _ = tok.split([tok.audio] + [i for i in row if i != tok.eos])
    spans = [x for kind, x in pieces if kind == 'audio']
    return np.concatenate(spans) if spans else np.zeros(0, np.int64)


def audio_to_codes(codec, item, where):
    """A flat code array (ints), a float waveform at 24 kHz, or a wav path -> flat raw codes (7T,)."""
    if isinstance(item, (str, os.PathLike)):
        if codec is None:
            raise ValueError(f"{where}: reading a wav needs a codec")
        wav = load_audio(item)
        if np.abs(wav).max() < 1e-4:
            warnings.warn(f"{item}: the audio is silent (peak {np.abs(wav).max():.1e}); transcribing it anyway")
        return flatten(codec.encode(wav))
    arr = np.asarray(item)
    if np.issubdtype(arr.dtype, np.integer):
        return flatten(unflatten(arr))  # checks whole frames and code ranges
    if codec is None:
        raise ValueError(f"{where}: a waveform needs a codec")
    return flatten(codec.encode(arr.astype(np.float32)))


def asr(model, tok, audio, codec=None, max_new_tokens=256, temperature=0.0, top_k=None, top_p=None, seed=None,
        batch_size=16, return_info=False):
    """Speech to text, greedy by default. audio: list whose items are flat code arrays (ints, 7T,), float
    waveforms at 24 kHz or wav paths (the last two need the codec). Returns a list of transcripts; with
    return_info, (transcripts, info)."""
    if isinstance(audio, (str, os.PathLike)) or (isinstance(audio, np.ndarray) and audio.ndim == 1):
        audio = [audio]  # one utterance, not a list of them
    audio = list(audio)
    flats = [audio_to_codes(codec, a, f"audio {k}") for k, a in enumerate(audio)]
    block = model.config.block_size
    texts, info = [], []
    for chunk in in_batches(list(range(len(flats))), batch_size):
        prompts = []
        for k in chunk:
            p = tok.asr_prompt(flats[k]).tolist()
            if len(p) >= block:
                fit = (block - 3) // FRAME_LEN * FRAME_SECONDS
                raise ValueError(f"audio {k} is {len(flats[k]) // FRAME_LEN * FRAME_SECONDS:.2f} s = {len(p)} tokens; "
                                 f"the model's context is {block} tokens, so at most about {fit:.2f} s fits")
            check_prompt_ids(tok, p, block, f"audio {k}")
            prompts.append(p)
        n = budget(max(len(p) for p in prompts), max_new_tokens, block, f"audio {chunk[0]}..{chunk[-1]}")
        rows, stats = generate_ids(model, tok, prompts, 'text', n, temperature, top_k, top_p, seed)
        for k, p, row in zip(chunk, prompts, rows):
            texts.append(tok.decode_text([i for i in row if i != tok.eos]))
            info.append(dict(mode='asr', source=audio[k] if isinstance(audio[k], str) else None,
                             seconds=len(flats[k]) // FRAME_LEN * FRAME_SECONDS, prompt_ids=p, generated_ids=row,
                             transcript=texts[-1], batch_start=chunk[0], **stats))
    return (texts, info) if return_info else texts


def continue_text(model, tok, texts, max_new_tokens=200, temperature=0.8, top_k=None, top_p=None, seed=None,
                  batch_size=16, return_info=False):
    """Plain text continuation of '<text> prompt'. Returns the continuations (without the prompt)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    block = model.config.block_size
    outs, info = [], []
    for chunk in in_batches(list(range(len(texts))), batch_size):
        prompts = []
        for k in chunk:
            p = [tok.text] + tok.encode_text(texts[k])
            check_prompt_ids(tok, p, block, f"text {k}")
            prompts.append(p)
        n = budget(max(len(p) for p in prompts), max_new_tokens, block, f"text {chunk[0]}..{chunk[-1]}")
        rows, stats = generate_ids(model, tok, prompts, 'text', n, temperature, top_k, top_p, seed)
        for k, p, row in zip(chunk, prompts, rows):
            outs.append(tok.decode_text([i for i in row if i != tok.eos]))
            info.append(dict(mode='text', text=texts[k], prompt_ids=p, generated_ids=row, continuation=outs[-1], batch_start=chunk[0], **stats))
    return (outs, info) if return_info else outs


def generate_raw(model, tok, prompts, max_new_tokens=200, temperature=0.8, top_k=None, top_p=None, seed=None,
                 batch_size=16, return_info=False):
    """Any id prompts (lists of ints) -> generated id lists, free except for the audio frame grammar."""
    block = model.config.block_size
    outs, info = [], []
    for chunk in in_batches(list(range(len(prompts))), batch_size):
        batch = [[int(i) for i in prompts[k]] for k in chunk]
        for k, p in zip(chunk, batch):
            check_prompt_ids(tok, p, block, f"prompt {k}")
        n = budget(max(len(p) for p in batch), max_new_tokens, block, f"prompts {chunk[0]}..{chunk[-1]}")
        rows, stats = generate_ids(model, tok, batch, 'any', n, temperature, top_k, top_p, seed)
        for k, p, row in zip(chunk, batch, rows):
            outs.append(row)
            pieces, warns = tok.split(p + row)
            info.append(dict(mode='raw', prompt_ids=p, generated_ids=row, warnings=warns,
                             reading=[(kind, x if isinstance(x, str) else f"{len(x) // FRAME_LEN} audio frames")
                                      for kind, x in pieces], batch_start=chunk[0], **stats))
    return (outs, info) if return_info else outs


def user_turn(tok, codec, question, where):
    """A question (text, a wav path, or flat codes) -> the user's turn for tokenizer.chat."""
    if isinstance(question, str) and not (question.lower().endswith('.wav') and os.path.isfile(question)):
        if not question.strip():
            raise ValueError(f"{where}: the question is empty")
        return ('user', [('text', question)])
    flat = audio_to_codes(codec, question, where)
    if len(flat) == 0:
        raise ValueError(f"{where}: the audio is empty (no whole {FRAME_SECONDS * 1000:.0f} ms frame in it)")
    return ('user', [('audio', flat)])


def fit_context(tok, turns, block, room, where):
    """The conversation's prompt ids (tokenizer.chat_prompt), the oldest turns dropped (with a warning) until `room`
    new tokens fit in the model's context; an error when the last question alone does not fit."""
    for first in range(len(turns)):
        prompt = tok.chat_prompt(turns[first:]).tolist()
        if len(prompt) + room <= block:
            if first:
                warnings.warn(f"{where}: dropped the {first} oldest turns to fit the model's context of {block} tokens")
            return prompt
    raise ValueError(f"{where}: the question is {len(prompt)} tokens; with {room} tokens for the answer it does not "
                     f"fit the model's context of {block} tokens")


def speaking_prefix(tok, turns, answer, block, where, min_seconds=1.0):
    """What comes before a written answer (a dict from chat()) is spoken: the conversation's prompt and the answer's
    written thought, with room for the answer's text and at least min_seconds of its audio (fit_context drops the
    oldest turns when needed)."""
    room = len(answer['thought_ids']) + len(tok.encode_text(answer['text'])) + 3 + \
        FRAME_LEN * round(min_seconds / FRAME_SECONDS)
    return fit_context(tok, turns, block, room, where) + answer['thought_ids']


def chat(model, tok, conversations, codec=None, speak=False, words=False, max_new_tokens=100, max_seconds=8.0,
         temperature=0.0, top_k=None, top_p=None, seed=None, batch_size=16, audio_temperature=None):
    """The assistant's next turn in each conversation ([(role, parts)] as tokenizer.chat takes them, ending with the
    user's question). The answer is written first (forced to start with <text>), then, with speak, spoken after it
    (SpeechGPT's chain of modality; word by word with WordGrammar for a model trained so, words=True). A model
    trained to write the question down first (prepare.py --qa_thought) does so; the answer is what follows its last
    <text>. Returns one dict per conversation: text, thought (the texts written before the answer), codes (None
    without speak), turn (the assistant's turn, to append for the next question), prompt_ids, generated_ids, timings."""
    block = model.config.block_size
    prompts = [fit_context(tok, turns, block, 8, f"conversation {k}") for k, turns in enumerate(conversations)]
    out = []
    for chunk in in_batches(list(range(len(prompts))), batch_size):
        batch = [prompts[k] + [tok.text] for k in chunk]
        n = budget(max(len(p) for p in batch), max_new_tokens, block, f"conversations {chunk[0]}..{chunk[-1]}")
        rows, stats = generate_ids(model, tok, batch, 'written', n, temperature, top_k, top_p, seed)
        for k, row in zip(chunk, rows):
            written = [tok.text] + [i for i in row if i != tok.eos]
            last = len(written) - written[::-1].index(tok.text)  # the answer follows the last <text>
            text = tok.decode_text(written[last:]).strip()
            thought = [x.strip() for kind, x in tok.split(written[:last - 1])[0] if kind == 'text']
            parts = [('text', t) for t in thought] + [('text', text)]
            out.append(dict(text=text, thought=thought, thought_ids=written[:last - 1], codes=None,
                            turn=('assistant', parts), prompt_ids=prompts[k], generated_ids=[tok.text] + row, **stats))
    if speak:
        said = [k for k, r in enumerate(out) if r['text']]  # nothing written, nothing to say
        # after the prompt's <assistant>: <text> answer <audio> codes (the chain of modality), or with words
        # <text> w1 <audio> .. <text> ' w2' <audio> .. (the answer said word by word)
        prefixes = [speaking_prefix(tok, conversations[k], out[k], block, f"conversation {k}") for k in said]
        codes = tts(model, tok, [out[k]['text'] for k in said], None, max_seconds,
                    temperature if audio_temperature is None else audio_temperature, top_k, top_p, seed,
                    batch_size=batch_size, words=words, prefixes=prefixes) if said else []
        for k, flat in zip(said, codes):
            out[k]['codes'] = flat
            out[k]['turn'] = ('assistant', out[k]['turn'][1] + [('audio', flat)])
    return out


def decode_codes(codec, flat):
    """Flat raw codes (7T,) -> float32 (T * FRAME_SAMPLES,) waveform."""
    if len(flat) == 0:
        return np.zeros(0, dtype=np.float32)
    return codec.decode(unflatten(flat))

# -----------------------------------------------------------------------------
# command line

DEFAULTS = dict(
    ckpt='out/tiny/ckpt.pt',   # checkpoint written by train.py
    mode='tts',                # tts | asr | text | raw
    out='out/samples',         # folder for wavs and the JSON record
    file='',                   # prompts, one per line: text (tts: "desc<TAB>text" too), wav path (asr), ids (raw)
    max_seconds=10.0,          # tts: the longest audio per prompt
    min_frames=1,              # tts: frames before <eos> may end the audio
    max_new_tokens=200,        # asr, text, raw
    temperature=None,          # None: 0 (greedy) for asr, 1.0 for tts, 0.8 for text and raw
    top_k=None,
    top_p=None,
    seed=1337,
    batch_size=16,             # prompts per left-padded batch
    device='auto',             # auto | cpu | cuda | mps
    dtype='float32',           # float32 | bfloat16 | float16 (model weights; the codec stays float32)
    words=None,                # tts: word by word (WordGrammar); None: as the checkpoint's data (prepare.py --tts_words)
    speak=False,               # chat: speak each answer too (<out>/chat_<i>.wav)
    compile=False,             # torch.compile the one-token decode step: pays for long outputs (~12 s to compile on CPU)
    expect_vocab='',           # refuse a checkpoint whose vocabulary differs: 'gpt2/level' or a meta.json path
    threads=0,                 # torch threads (0: torch's default)
)
LIST_KEYS = ('text', 'desc', 'wav', 'prompt_ids', 'turn')  # may repeat; taken as raw strings, never parsed
MODES = ('tts', 'asr', 'text', 'raw', 'chat')


def parse_args(argv):
    """--key=value args -> (config dict, {list key: [values]}). List keys keep their text as written."""
    lists = {k: [] for k in LIST_KEYS}
    rest = []
    for arg in argv:
        key, _, value = arg[2:].partition('=')
        if arg.startswith('--') and key in lists and '=' in arg:
            lists[key].append(value)
        else:
            rest.append(arg)
    cfg = apply_overrides(DEFAULTS, rest)
    if cfg['mode'] not in MODES:
        raise ValueError(f"--mode={cfg['mode']}: choose one of {MODES}")
    return cfg, lists


def parse_ids(text, where):
    try:
        return [int(x) for x in text.replace(',', ' ').split()]
    except ValueError:
        raise ValueError(f"{where}: prompt ids must be integers separated by commas or spaces, got {text!r}") from None


def read_prompt_file(path, mode):
    if not os.path.isfile(path):
        raise ValueError(f"--file={path}: no such file")
    with open(path) as f:
        lines = [line.rstrip('\n') for line in f if line.strip()]
    if not lines:
        raise ValueError(f"--file={path}: no prompts in it")
    if mode == 'tts':
        pairs = [line.split('\t', 1) if '\t' in line else [None, line] for line in lines]
        return [t for _, t in pairs], [d for d, _ in pairs]
    if mode == 'chat':
        return [chat_line(line, f"{path} line {n}") for n, line in enumerate(lines, 1)], None
    return lines, None


def chat_line(line, where):
    """'role: content' -> (role, content); role one of tokenizer.ROLES."""
    role, sep, content = line.partition(':')
    role = role.strip().lower()
    if not sep:
        raise ValueError(f"{where}: {line[:40]!r} does not start with a role: write 'user: ...', 'assistant: ...' "
                         f"or 'system: ...'")
    if role not in ROLES:
        raise ValueError(f"{where}: unknown role {role!r}; choose one of {ROLES}")
    return role, content.strip()


def run_chat(model, tok, codec, lines, cfg, words, kw):
    """Answer a conversation's user turns in order: [(role, content)], content text or a .wav path. Given
    assistant and system lines join the context as they are."""
    conversation, info = [], []
    for n, (role, content) in enumerate(lines):
        where = f"turn {n + 1}"
        if role != 'user':
            conversation.append((role, [('text', content)]))
            continue
        conversation.append(user_turn(tok, codec, content, where))
        if n + 1 < len(lines) and lines[n + 1][0] == 'assistant':
            continue  # answered by the next line
        answer = chat(model, tok, [conversation], codec, speak=cfg['speak'], words=words,
                      max_new_tokens=cfg['max_new_tokens'], max_seconds=cfg['max_seconds'], **kw)[0]
        conversation.append(answer['turn'])
        rec = dict(mode='chat', question=content, answer=answer['text'], prompt_ids=answer['prompt_ids'],
                   generated_ids=answer['generated_ids'], batch_start=len(info),
                   **{k: answer[k] for k in ('generate_s', 'time_to_first_token_s')})
        if answer['codes'] is not None:
            rec['wav'] = os.path.join(cfg['out'], f"chat_{len(info):03d}.wav")
            write_wav(rec['wav'], decode_codes(codec, answer['codes']))
            rec['seconds'] = len(answer['codes']) // FRAME_LEN * FRAME_SECONDS
        print(f"[{len(info)}] {content!r} -> {answer['text']!r}" + (f" -> {rec['wav']}" if 'wav' in rec else ''))
        info.append(rec)
    if not info:
        raise ValueError("--mode=chat: no user turn to answer")
    return info


def main(argv):
    cfg, lists = parse_args(argv)
    mode = cfg['mode']
    temperature = cfg['temperature'] if cfg['temperature'] is not None else \
        {'asr': 0.0, 'chat': 0.0, 'tts': 1.0}.get(mode, 0.8)
    check_sampling(temperature, cfg['top_k'], cfg['top_p'], ('--temperature', '--top_k', '--top_p'))
    device = start(cfg['device'], cfg['threads'])
    t0 = time.perf_counter()
    model, tok, codec, ckpt = load_checkpoint(cfg['ckpt'], device, cfg['dtype'], need_codec=mode in ('tts', 'asr', 'chat'),
                                              expect_vocab=cfg['expect_vocab'] or None)
    load_s = time.perf_counter() - t0
    if cfg['compile']:
        compile_decoding(model)
    print(f"loaded {cfg['ckpt']} in {load_s:.2f} s: {model.num_params() / 1e6:.2f} M non-embedding parameters, "
          f"vocabulary {tok.encoding}/{tok.layout}, codec {codec.describe()['label'] if codec else '-'}, {device}")
    kw = dict(temperature=temperature, top_k=cfg['top_k'], top_p=cfg['top_p'], seed=cfg['seed'],
              batch_size=cfg['batch_size'], return_info=True)
    file_prompts, file_descs = read_prompt_file(cfg['file'], mode) if cfg['file'] else ([], None)
    os.makedirs(cfg['out'], exist_ok=True)
    if mode == 'tts':
        texts = lists['text'] + file_prompts
        descs = lists['desc'] or [None]
        if len(descs) == 1:
            descs = descs * len(lists['text'])
        elif len(descs) != len(lists['text']):
            raise ValueError(f"{len(lists['text'])} --text but {len(descs)} --desc: give one --desc for all, or one per --text")
        descs = descs + (file_descs or [None] * len(file_prompts))
        if not texts:
            raise ValueError("--mode=tts needs --text=... (or --file=prompts.txt)")
        codes, info = tts(model, tok, texts, descs, max_seconds=cfg['max_seconds'], min_frames=cfg['min_frames'],
                          words=speaks_word_by_word(ckpt, cfg['words']), **kw)
        for k, (flat, rec) in enumerate(zip(codes, info)):
            t = time.perf_counter()
            wav = decode_codes(codec, flat)
            rec['decode_s'] = time.perf_counter() - t
            rec['wav'] = os.path.join(cfg['out'], f"tts_{k:03d}.wav")
            write_wav(rec['wav'], wav)
            print(f"[{k}] {rec['text']!r}: {rec['frames']} frames = {rec['seconds']:.2f} s"
                  f"{' (hit max_seconds)' if rec['hit_max'] else ''} -> {rec['wav']}")
    elif mode == 'asr':
        wavs = lists['wav'] + file_prompts
        if not wavs:
            raise ValueError("--mode=asr needs --wav=file.wav (or --file=list.txt)")
        texts, info = asr(model, tok, wavs, codec, max_new_tokens=cfg['max_new_tokens'], **kw)
        for k, (w, t) in enumerate(zip(wavs, texts)):
            print(f"[{k}] {w}: {t!r}")
    elif mode == 'text':
        texts = lists['text'] + file_prompts
        if not texts:
            raise ValueError("--mode=text needs --text=... (or --file=prompts.txt)")
        outs, info = continue_text(model, tok, texts, max_new_tokens=cfg['max_new_tokens'], **kw)
        for k, (t, o) in enumerate(zip(texts, outs)):
            print(f"[{k}] {t!r} -> {o!r}")
    elif mode == 'chat':
        lines = [('user', t) for t in lists['turn']] + file_prompts
        if not lines:
            raise ValueError("--mode=chat needs --turn=... (a question, or a .wav of one; or --file=chat.txt)")
        info = run_chat(model, tok, codec, lines, cfg, speaks_word_by_word(ckpt, cfg['words']),
                        {k: v for k, v in kw.items() if k not in ('batch_size', 'return_info')})
    else:
        prompts = [parse_ids(p, f"--prompt_ids #{k}") for k, p in enumerate(lists['prompt_ids'])]
        prompts += [parse_ids(line, f"{cfg['file']} line {k + 1}") for k, line in enumerate(file_prompts)]
        if not prompts:
            raise ValueError("--mode=raw needs --prompt_ids=1,2,3 (or --file=ids.txt)")
        outs, info = generate_raw(model, tok, prompts, max_new_tokens=cfg['max_new_tokens'], **kw)
        for k, rec in enumerate(info):
            print(f"[{k}] {rec['generated_ids'][:32]}{' ...' if len(rec['generated_ids']) > 32 else ''} reads {rec['reading']}")
    n_new = sum(len(r['generated_ids']) for r in info)
    gen_s = sum({r['batch_start']: r['generate_s'] for r in info}.values())  # records of one batch share its timings
    print(f"generated {n_new} tokens in {gen_s:.2f} s ({n_new / max(gen_s, 1e-9):.1f} tokens/s), "
          f"time to first token {info[0]['time_to_first_token_s'] * 1e3:.0f} ms")
    record = dict(ckpt=cfg['ckpt'], config=cfg, device=device, load_s=load_s, vocab=tok.to_dict(),
                  codec=codec.describe() if codec else None, results=info)
    path = os.path.join(cfg['out'], f"{mode}.json")
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)
    print(f"wrote {path}")
    return record


if __name__ == '__main__':
    run(main)
