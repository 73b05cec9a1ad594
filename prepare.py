"""
Prepare a dataset: speech + transcripts -> SNAC-layout codes -> task sequences -> data/<name>/.

    python prepare.py                                          # the tiny espeak-ng corpus, 4,000 utterances, codec auto
    python prepare.py --source=tiny --name=tiny_small --n_train=400 --n_val=40 --voices=en-us,en --codec=mel
    python prepare.py --source=tiny --name=hibari --voices=hibari --tts_words=1.0    # a natural voice, word by word
    python prepare.py --source=tiny --name=tiny_hibari --voices=hibari --codec=mel   # a natural voice, ~2 min
    python prepare.py --source=mls --name=mls --shards=4 --workers=2      # SNAC-tokenized MLS English from the hub
    python prepare.py --source=mls --name=mls --hours=100                # as many shards as 100 hours need
    python prepare.py --source=mls --name=mls_local --files='mirror/part_*.csv' --encoding=byte
    python prepare.py --source=folder --path=/tmp/tiny_wavs --name=mine --codec=mel:data/tiny/codec.npz
    python prepare.py --source=tiny --name=tiny --force                  # rebuild a complete dataset

Sources, one output format (tokenfile.py; read it back with tokenfile.load_split):
  tiny    tinyspeech.py: template sentences spoken by espeak-ng voices; the val split holds held-out sentences
          spoken by training speakers and by held-out speakers (utterances.jsonl: speaker_heldout).
          --voices=hibari,joe speaks them with natural voices instead (pip packages; their audio is kept in
          data/<name>/synth/, so an interrupted build resumes where it stopped).
  mls     CSV shards (columns text, snac24khz; SNAC codes as a string of ints, 7 per frame, depth-first) from a
          hub dataset repo, or local copies with --files. Parquet shards with the same columns load too
          (--repo=... --pattern='*.parquet', needs pyarrow). Shards are fetched and tokenized in parallel
          (--workers); each finished shard leaves its outputs and a done-marker under data/<name>/parts/, so an
          interrupted or extended run does not fetch or tokenize it again.
  folder  <stem>.wav + <stem>.txt pairs, or manifest.jsonl / manifest.csv (columns audio, text[, desc, speaker]).
  qa      the tiny corpus (for hearing and speaking) plus a world of facts to ask about (qaworld.py): every fact
          stated in text and asked in text; the 'both' people's facts also asked and answered in speech as chat
          turns (tokenizer.chat); the text-only people's facts never spoken. The val split adds spoken questions
          about text-only facts; qa_test.jsonl holds the test questions (spoken and text) that eval.py asks.

Codec (tiny, folder): --codec=auto uses pretrained SNAC when it is cached or the hub answers within a few
seconds, else the log-mel stand-in (codec.MelCodec) fitted on the training audio and saved as codec.npz.
--codec=mel | mel:<file.npz> | snac | snac:<hub id or folder> choose one explicitly. meta.json says which.

Task mixture, per utterance: a fraction f of a task (--tts, --asr, --text) makes floor(f) examples plus one
more with probability f - floor(f) (seeded), so 1.0 is exactly one, 0.2 one in five, 2.0 two. --tts_desc is
the probability that a TTS example starts with the speaker description (<desc> ... <text> ...) when the
utterance has one. --tts_words is the probability that a TTS example is interleaved word by word (each word's
text, then its audio: tokenizer.tts_words) when the voice tells where its words end (tinyspeech.word_ends: hibari);
--asr_words the same for ASR examples (each word's audio, then its text: tokenizer.asr_words). Both apply to the
QA world's spoken lines too (prepare.py --source=qa). The same mixture is used for both splits.

Output, data/<name>/: {train,val}.bin (a header of 256 int64 [MAGIC, VERSION, itemsize, n_tokens, n_examples]
then the ids, uint16 while the vocabulary fits, else uint32), {train,val}.idx.npy ((n_examples, 4) int64:
start, length, task as an index into tokenizer.TASKS, target_start within the example), utterances.jsonl (one
record per utterance: split, text, desc, speaker, n_frames, its example numbers), codec.npz (stand-in codec
only) and meta.json, written last: a folder without it is incomplete. Every file is written atomically.

Rows that fail validation are skipped and counted by reason (file, row and field of a few of them in
meta.json); a trailing partial frame is dropped and the row counted as repaired. The train/val split is a
hash (sha256) of the speaker when the source names one, else of the transcript: stable across runs.
"""
import csv
import glob
import hashlib
import json
import os
import random
import shutil
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from fnmatch import fnmatch

import numpy as np
from huggingface_hub import HfApi, hf_hub_download, try_to_load_from_cache
from tqdm import tqdm

import codec as codec_lib
import qaworld
import tinyspeech
from configurator import apply_overrides, run
from tokenfile import VERSION, atomic_write, write_token_chunks
from tokenizer import (CODEBOOK_SIZE, FRAME_LEN, FRAME_SAMPLES, FRAME_SECONDS, LEVEL_RATES, N_LEVELS, SAMPLE_RATE,
                       TASKS, Tokenizer, flatten, token_dtype, unflatten)

config = dict(
    source='tiny',            # tiny | mls | folder
    name='',                  # data/<name>/ (default: the source name)
    out_dir='data',
    encoding='',              # byte | gpt2 | cl100k_base (default: gpt2 for mls, byte otherwise: works offline)
    layout='level',           # level | position (see tokenizer.py)
    tts=1.0, tts_desc=0.5, asr=1.0, text=0.2,  # task mixture, see the docstring
    tts_words=0.0,            # share of TTS examples interleaved word by word (tokenizer.tts_words), for utterances
                              # whose voice tells where each word ends (tiny, qa: hibari)
    asr_words=0.0,            # share of ASR examples interleaved word by word, each word's audio then its text
                              # (tokenizer.asr_words); evaluation still transcribes whole utterances
    seed=0,
    force=False,              # rebuild even when data/<name>/ is complete and up to date
    codec='auto',             # tiny, folder: auto | mel | mel:<file.npz> | snac | snac:<hub id or folder>
    mel_codes=4096,           # codes per level of the stand-in codec fitted here and of the vocabulary (at most 4096,
                              # SNAC's, which needs them all): fewer are easier to learn, shrink the output layer
                              # (256: small models trained 1.2-1.4x faster, docs/results.md) and keep less of the sound
    n_train=4000, n_val=400,  # tiny, qa: utterances; val is half training speakers, half held-out speakers
    qa_people=200, qa_text_only=0.25,  # qa: people in the world (qaworld.py), the share whose facts stay in text
    qa_bio=4, qa_text=2, qa_spoken=1, qa_multi=2,  # qa: per person, texts stating their facts (in random orders);
                              # per fact, text question -> text answer examples and rounds of the four spoken forms
                              # (both-modality people only); per person, two-turn conversations
    qa_greetings=3,           # qa: per person, fact-free spoken lines with the name (qaworld.GREETINGS), so the ear
                              # hears the names of text-only people too
    qa_sentences=0,           # qa: per person, spoken sentences of the tiny corpus's kind naming them, with none of
                              # their facts (qaworld.corpus_lines), for ASR and TTS like the greetings
    qa_unknown=0,             # qa: per person, spoken questions the world cannot answer ("Where does Jill work?" ->
                              # "I don't know where Jill works."; qaworld.UNKNOWNS): the ear hears every name inside
                              # a question, with no fact
    qa_strangers=0,           # qa: names outside the world asked the world's questions, in text and in speech, and
                              # answered "I don't know ..." (qaworld.strangers): the ear reads the name in a question
    qa_thought=0.0,           # qa: share of question examples (text and spoken) whose answer first writes the
                              # question down: a spoken question then meets the text questions' route to the answer
    voices='',                # tiny: comma-separated espeak-ng voices (default: all of tinyspeech.ACCENTS) and/or
                              # natural voices, tinyspeech.NATURAL_VOICES (hibari, joe; each needs its pip package)
    genders='', rates='', pitches='',  # tiny: comma-separated names from tinyspeech.GENDERS, RATES, PITCHES
                              # (default: tinyspeech.DEFAULT_SPEAKERS, male at a steady rate and mid pitch)
    repo='blanchon/snac_llm_parler_tts', pattern='data/part_*.csv',  # mls: hub dataset repo and shard pattern
    shards=0, hours=0.0,      # mls: how many shards (0: all of --files, 1 from the hub), or (hours > 0) as many
                              # as that many hours of audio need
    files='',                 # mls: local shards instead of the hub, a glob (comma-separate several)
    workers=2,                # mls: parallel worker processes; tiny, qa: processes synthesizing a natural voice
    path='',                  # folder: the directory
    val_fraction=0.05,        # mls, folder: share of speakers (or transcripts) held out
    min_seconds=0.5, max_seconds=40.0, max_text_chars=1000,  # row validation bounds
)
SNAC_CODES_COLUMN, TEXT_COLUMN = 'snac24khz', 'text'
DESC_COLUMNS = ('text_description', 'description', 'desc')  # the first one present gives the <desc> prefix
SPEAKER_COLUMNS = ('speaker_id', 'speaker')  # the first one present keys the train/val split
SEPARATORS = ('#', str(CODEBOOK_SIZE + 1))  # some copies put one before every frame and one at the end
AUDIO_EXTENSIONS = ('.wav',)  # what codec.load_audio reads
MAX_SKIP_EXAMPLES = 5  # per reason, in meta.json
SKIP_WARN_SHARE = 0.5  # more rows skipped than this share ends the run with a warning
SPLITS = ('train', 'val')

# -----------------------------------------------------------------------------
# small files, written atomically (tokenfile.atomic_write)

def save_json(path, obj):
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=1)
    atomic_write(path, write)


def save_npy(path, array):
    atomic_write(path, lambda tmp: np.save(tmp, array))


def save_jsonl(path, records):
    def write(tmp):
        with open(tmp, 'w') as f:
            for r in records:
                f.write(json.dumps(r) + '\n')
    atomic_write(path, write)


# -----------------------------------------------------------------------------
# task sequences: the mixture, one split's examples, skip and repair counts

def repeats(fraction, rng):
    """floor(f) examples, plus one with probability f - floor(f)."""
    whole = int(fraction)
    return whole + int(rng.random() < fraction - whole)


def utterance_examples(tok, text, flat, desc, mixture, rng, frames=None):
    """[(task, ids, target_mask, with_desc)] for one utterance, as many of each task as the mixture draws. frames:
    frames per word of text.split() (word_frames), which lets TTS and ASR examples interleave text and audio word by
    word."""
    out = []
    for _ in range(repeats(mixture['tts'], rng)):
        with_desc = bool(desc) and rng.random() < mixture['tts_desc']
        d = desc if with_desc else None
        if frames is not None and rng.random() < mixture['tts_words']:  # no draw without timings: old builds stay
            out.append(('tts', *tok.tts_words(text.split(), flat, frames, d), with_desc))
        else:
            out.append(('tts', *tok.tts(text, flat, d), with_desc))
    for _ in range(repeats(mixture['asr'], rng)):
        if frames is not None and mixture['asr_words'] and rng.random() < mixture['asr_words']:
            out.append(('asr', *tok.asr_words(text.split(), flat, frames), False))
        else:
            out.append(('asr', *tok.asr(flat, text), False))
    for _ in range(repeats(mixture['text'], rng)):
        out.append(('text', *tok.plain(text), False))
    return out


def empty_stats():
    return dict(n_utterances=0, seconds=0.0, n_speaker_heldout=0,
                tasks={t: dict(examples=0, tokens=0, seconds=0.0, with_desc=0) for t in TASKS})


def add_stats(a, b):
    """Sum two empty_stats()-shaped dicts."""
    out = {k: a[k] + b[k] for k in ('n_utterances', 'seconds', 'n_speaker_heldout')}
    out['tasks'] = {t: {k: a['tasks'][t][k] + b['tasks'][t][k] for k in a['tasks'][t]} for t in TASKS}
    return out


class SplitWriter:
    """One split's examples, built in memory: ids, index rows [start, length, task, target_start],
    utterance records (examples: their rows in the index), statistics and code counts per level."""

    def __init__(self, tok):
        self.tok, self.dtype = tok, token_dtype(tok.vocab_size)
        self.chunks, self.rows, self.utts = [], [], []
        self.n_tokens = 0
        self.stats = empty_stats()
        self.code_counts = np.zeros((N_LEVELS, CODEBOOK_SIZE), np.int64)

    def add(self, record, flat, examples):
        seconds = len(flat) // FRAME_LEN * FRAME_SECONDS
        first = len(self.rows)
        for task, ids, mask, with_desc in examples:
            self.rows.append((self.n_tokens, len(ids), TASKS.index(task), int(np.argmax(mask))))
            self.chunks.append(ids.astype(self.dtype))
            self.n_tokens += len(ids)
            s = self.stats['tasks'][task]
            s['examples'] += 1
            s['tokens'] += len(ids)
            s['seconds'] += seconds if task != 'text' else 0.0
            s['with_desc'] += int(with_desc)
        for level, codes in enumerate(unflatten(flat)):
            self.code_counts[level] += np.bincount(codes, minlength=CODEBOOK_SIZE)
        self.stats['n_utterances'] += 1
        self.stats['seconds'] += seconds
        self.stats['n_speaker_heldout'] += int(bool(record.get('speaker_heldout')))
        self.utts.append(dict(record, n_frames=len(flat) // FRAME_LEN, examples=list(range(first, len(self.rows)))))

    def tokens(self):
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, self.dtype)

    def idx(self):
        return np.array(self.rows, dtype=np.int64).reshape(-1, 4)

    def part(self):
        """The in-memory form write_dataset() takes."""
        return dict(tokens=self.tokens(), idx=self.idx(), utts=self.utts, stats=self.stats, code_counts=self.code_counts)


class Skips:
    """Skipped rows counted by reason, a few examples of each (file, row, field, detail); repaired rows too."""

    def __init__(self, d=None):
        d = d or {}
        self.skipped = Counter(d.get('skipped', {}))
        self.repaired = Counter(d.get('repaired', {}))
        self.examples = {k: list(v) for k, v in d.get('skipped_examples', {}).items()}
        self.repaired_examples = {k: list(v) for k, v in d.get('repaired_examples', {}).items()}

    def skip(self, reason, **where):
        self.skipped[reason] += 1
        self._remember(self.examples, reason, where)

    def repair(self, reason, **where):
        self.repaired[reason] += 1
        self._remember(self.repaired_examples, reason, where)

    @staticmethod
    def _remember(book, reason, where):
        if len(book.setdefault(reason, [])) < MAX_SKIP_EXAMPLES:
            book[reason].append(where)

    def merge(self, other):
        self.skipped.update(other.skipped)
        self.repaired.update(other.repaired)
        for mine, theirs in ((self.examples, other.examples), (self.repaired_examples, other.repaired_examples)):
            for reason, wheres in theirs.items():
                for w in wheres:
                    self._remember(mine, reason, w)

    def to_dict(self):
        return dict(skipped=dict(self.skipped), skipped_examples=self.examples,
                    repaired=dict(self.repaired), repaired_examples=self.repaired_examples)


def split_of(key, val_fraction):
    """'train' or 'val' from a sha256 of key: the same on every run and machine (unlike hash())."""
    h = int.from_bytes(hashlib.sha256(key.encode('utf-8')).digest()[:8], 'big') / 2 ** 64
    return 'val' if h < val_fraction else 'train'


def check_duration(n_frames, opts):
    """None if the duration is within bounds, else the skip reason."""
    seconds = n_frames * FRAME_SECONDS
    if seconds < opts['min_seconds']:
        return 'too short'
    if seconds > opts['max_seconds']:
        return 'too long'
    return None


def check_transcript(text, opts):
    if not text.strip():
        return 'empty transcript'
    if len(text) > opts['max_text_chars']:
        return 'transcript too long'
    return None

# -----------------------------------------------------------------------------
# source mls: SNAC code strings in CSV (or parquet) shards

class BadRow(ValueError):
    def __init__(self, reason, field, detail):
        super().__init__(f"{reason} ({field}: {detail})")
        self.reason, self.field, self.detail = reason, field, detail


def parse_snac_codes(s):
    """'c c c ...' (7 per frame, depth-first), optionally with a separator ('#' or 4097) before every frame
    and one at the end -> (flat codes (7T,) int64, repaired: a trailing partial frame was dropped).
    Raises BadRow: unparseable codes, malformed frame, code out of range, no codes, too short."""
    field = SNAC_CODES_COLUMN
    head = s.split(None, 1)
    sep_style = bool(head) and head[0] in SEPARATORS
    text = s.replace('#', SEPARATORS[1]) if sep_style else s
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', DeprecationWarning)  # older numpy warns instead of raising on bad input
            values = np.fromstring(text, dtype=np.int64, sep=' ')  # 5x faster than int() per token
    except (ValueError, DeprecationWarning):
        for i, token in enumerate(s.split()):
            if not (token.isdigit() or (token[:1] == '-' and token[1:].isdigit()) or (sep_style and token in SEPARATORS)):
                raise BadRow('unparseable codes', field, f"token {i} is {token[:20]!r}") from None
        raise BadRow('unparseable codes', field, 'not whitespace-separated integers') from None
    if values.size == 0:
        raise BadRow('no codes', field, 'empty')
    sep = int(SEPARATORS[1])
    if sep_style and len(values) % (FRAME_LEN + 1) == 1 and (values[::FRAME_LEN + 1] == sep).all():
        values = values[:-1].reshape(-1, FRAME_LEN + 1)[:, 1:].reshape(-1)  # the usual layout, vectorized
    elif sep_style:
        cuts = np.flatnonzero(values == sep)
        frames = np.split(values, cuts)[1:]  # (separator, 7 codes) pieces; the row starts with a separator
        if len(frames[-1]) == 1:
            frames = frames[:-1]  # the closing separator
        # every frame but the last has exactly 7 codes; a short last one is a partial frame, dropped below
        last = len(frames) - 1
        bad = [k for k, f in enumerate(frames) if len(f) != FRAME_LEN + 1 and (k < last or len(f) > FRAME_LEN + 1)]
        if bad:
            raise BadRow('malformed frame', field, f"frame {bad[0]} has {len(frames[bad[0]]) - 1} codes between separators")
        values = np.concatenate([f[1:] for f in frames]) if frames else values[:0]
    out_of_range = np.flatnonzero((values < 0) | (values >= CODEBOOK_SIZE))
    if out_of_range.size:
        i = int(out_of_range[0])
        raise BadRow('code out of range', field, f"code {int(values[i])} at position {i} (raw codes are 0..{CODEBOOK_SIZE - 1})")
    whole = len(values) - len(values) % FRAME_LEN
    if whole == 0:
        raise BadRow('too short', field, f"{len(values)} codes, less than one {FRAME_LEN}-code frame")
    return values[:whole], whole < len(values)


def first_present(row, names):
    for n in names:
        if row.get(n) not in (None, ''):
            return n, row[n]
    return None, None


def validate_row(row, opts):
    """A CSV/parquet row -> (record, flat codes, repaired). Raises BadRow naming the reason and field."""
    for column in (TEXT_COLUMN, SNAC_CODES_COLUMN):
        if row.get(column) is None:
            raise BadRow('missing column', column, 'no such column or an empty cell in a short row')
    text = str(row[TEXT_COLUMN]).strip()
    reason = check_transcript(text, opts)
    if reason:
        raise BadRow(reason, TEXT_COLUMN, f"{len(text)} characters")
    codes = row[SNAC_CODES_COLUMN]
    flat, repaired = parse_snac_codes(codes if isinstance(codes, str) else ' '.join(map(str, codes)))  # parquet lists
    reason = check_duration(len(flat) // FRAME_LEN, opts)
    if reason:
        raise BadRow(reason, SNAC_CODES_COLUMN, f"{len(flat) // FRAME_LEN * FRAME_SECONDS:.2f} s")
    record = dict(text=text)
    desc_column, desc = first_present(row, DESC_COLUMNS)
    speaker_column, speaker = first_present(row, SPEAKER_COLUMNS)
    if desc and str(desc).strip():
        record['desc'] = str(desc).strip()
    if speaker is not None:
        record['speaker'] = str(speaker)
    extra = {k: v for k, v in row.items() if k not in (TEXT_COLUMN, SNAC_CODES_COLUMN, desc_column, speaker_column)
             and k is not None and v not in (None, '')}
    if extra:
        record['extra'] = {k: v if isinstance(v, (int, float, bool)) else str(v) for k, v in extra.items()}
    return record, flat, repaired


def iter_rows(path):
    """(row number from 1, dict) for every data row of a CSV or parquet shard."""
    if path.endswith('.parquet'):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError(f"{path}: reading parquet shards needs pyarrow (pip install pyarrow)") from None
        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                yield n, row
        return
    csv.field_size_limit(sys.maxsize)  # a long utterance's code string is far above the 128 KB default
    # utf-8-sig: spreadsheets and pandas' to_csv(encoding='utf-8-sig') start the file with a byte-order mark, which
    # plain utf-8 would keep in the first column's name ('\ufefftext'), and every row would lack its text column
    with open(path, newline='', encoding='utf-8-sig', errors='replace') as f:
        for n, row in enumerate(csv.DictReader(f), start=1):
            yield n, row


def shard_key(opts):
    """The options a shard's outputs depend on: a finished shard is reused only when they match."""
    keys = ('encoding', 'layout', 'tts', 'tts_desc', 'asr', 'text', 'seed', 'val_fraction', 'min_seconds',
            'max_seconds', 'max_text_chars')
    return {k: opts[k] for k in keys}


def prepare_shard(job):
    """Fetch (if needed), validate and tokenize one shard into job['out']/ ; done.json is written last.
    Returns done.json's content. Runs in a worker process."""
    out, opts, name = job['out'], job['opts'], job['name']
    done_path = os.path.join(out, 'done.json')
    if os.path.exists(done_path):
        with open(done_path) as f:
            done = json.load(f)
        if done['key'] == shard_key(opts) and done['source'] == job['source']:
            return done
    path = job['path']
    if path is None:
        path = hub_download(job['repo'], job['filename'])
    os.makedirs(out, exist_ok=True)
    tok = Tokenizer(opts['encoding'], opts['layout'])
    writers = {s: SplitWriter(tok) for s in SPLITS}
    skips = Skips()
    # one generator per shard, seeded from the shard's name: the same examples whatever the worker order
    rng = np.random.default_rng([opts['seed'], int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)])
    n_rows = 0
    try:
        for n_rows, row in iter_rows(path):
            try:
                record, flat, repaired = validate_row(row, opts)
            except BadRow as e:
                skips.skip(e.reason, file=name, row=n_rows, field=e.field, detail=e.detail)
                continue
            if repaired:
                skips.repair('partial trailing frame', file=name, row=n_rows, field=SNAC_CODES_COLUMN)
            record['source'] = f"{name}:{n_rows}"
            split = split_of(record.get('speaker', record['text']), opts['val_fraction'])
            examples = utterance_examples(tok, record['text'], flat, record.get('desc'), opts, rng)
            writers[split].add(record, flat, examples)
    except (csv.Error, UnicodeError, OSError) as e:  # a broken file: keep what was read, count the rest as one
        skips.skip('unreadable file', file=name, row=n_rows + 1, field='', detail=f"{type(e).__name__}: {e}")
    for split, w in writers.items():
        save_npy(os.path.join(out, f'{split}.tokens.npy'), w.tokens())
        save_npy(os.path.join(out, f'{split}.idx.npy'), w.idx())
        save_npy(os.path.join(out, f'{split}.counts.npy'), w.code_counts)
        save_jsonl(os.path.join(out, f'{split}.utts.jsonl'), w.utts)
    done = dict(key=shard_key(opts), source=job['source'], rows=n_rows, skips=skips.to_dict(),
                stats={s: w.stats for s, w in writers.items()})
    save_json(done_path, done)
    return done


def load_shard_part(out, split):
    """A finished shard's outputs for one split, in write_dataset()'s form (tokens memory-mapped)."""
    with open(os.path.join(out, 'done.json')) as f:
        stats = json.load(f)['stats'][split]

    def utts():
        with open(os.path.join(out, f'{split}.utts.jsonl')) as f:
            for line in f:
                yield json.loads(line)
    return dict(tokens=np.load(os.path.join(out, f'{split}.tokens.npy'), mmap_mode='r'),
                idx=np.load(os.path.join(out, f'{split}.idx.npy')), utts=utts, stats=stats,
                code_counts=np.load(os.path.join(out, f'{split}.counts.npy')))


def hub_download(repo, filename):
    try:
        return hf_hub_download(repo, filename, repo_type='dataset')  # resumes partial downloads, caches
    except Exception as e:
        raise RuntimeError(f"could not download {filename} from the hub dataset {repo} ({type(e).__name__}: {e}). "
                           f"Offline? Use --files=<local shards> or --source=tiny") from None


def hub_shards(repo, pattern, timeout=10.0):
    """The repo's files matching pattern, sorted. A clear error when the hub cannot be reached."""
    try:
        info = HfApi().dataset_info(repo, timeout=timeout)
    except Exception as e:
        raise RuntimeError(f"cannot list the hub dataset {repo} ({type(e).__name__}: {str(e)[:200]}). The Hugging Face "
                           f"hub looks unreachable from here: use --files=<local shards in the same schema> or "
                           f"--source=tiny") from None
    names = sorted(s.rfilename for s in info.siblings if fnmatch(s.rfilename, pattern))
    if not names:
        raise ValueError(f"no file of the hub dataset {repo} matches --pattern={pattern}")
    return names


def shard_jobs(opts, parts_dir):
    """One job per shard, in order: local files (--files) or hub files (--repo, --pattern)."""
    if opts['files']:
        paths = sorted(p for pattern in opts['files'].split(',') for p in glob.glob(os.path.expanduser(pattern)))
        if not paths:
            raise FileNotFoundError(f"--files={opts['files']} matches no file")
        names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        if len(set(names)) < len(names):
            raise ValueError(f"--files: two shards share a file name: {[n for n, c in Counter(names).items() if c > 1]}")
        sources = [dict(name=n, path=p, repo=None, filename=None,
                        source=dict(path=os.path.abspath(p), bytes=os.path.getsize(p), mtime=int(os.path.getmtime(p))))
                   for n, p in zip(names, paths)]
    else:
        files = hub_shards(opts['repo'], opts['pattern'])
        sources = [dict(name=os.path.splitext(os.path.basename(f))[0], path=None, repo=opts['repo'], filename=f,
                        source=dict(repo=opts['repo'], file=f)) for f in files]
    if opts['hours'] <= 0:
        sources = sources[:opts['shards'] or (len(sources) if opts['files'] else 1)]
    return [dict(s, out=os.path.join(parts_dir, s['name']), opts=opts) for s in sources]


def run_shards(jobs, opts):
    """Run prepare_shard over jobs (workers in parallel) and return the finished jobs to use, in order:
    all of them, or with --hours the shortest prefix whose training + val audio reaches that many hours."""
    want_hours = opts['hours']
    done = {}

    def enough():
        hours = 0.0
        for i, j in enumerate(jobs):
            if i not in done:
                return None
            hours += sum(s['seconds'] for s in done[i]['stats'].values()) / 3600
            if want_hours > 0 and hours >= want_hours:
                return i + 1
        return len(jobs)

    bar = tqdm(total=len(jobs) if want_hours <= 0 else None, desc='shards', unit='shard')
    if opts['workers'] <= 1:
        for i, job in enumerate(jobs):
            done[i] = prepare_shard(job)
            bar.update()
            if enough():
                break
    else:
        with ProcessPoolExecutor(opts['workers']) as pool:
            pending, next_job = {}, 0
            while True:
                while next_job < len(jobs) and len(pending) < opts['workers'] and not enough():
                    pending[pool.submit(prepare_shard, jobs[next_job])] = next_job
                    next_job += 1
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    done[pending.pop(fut)] = fut.result()
                    bar.update()
    bar.close()
    n = enough()
    if want_hours > 0 and n == len(jobs):
        hours = sum(s['seconds'] for d in done.values() for s in d['stats'].values()) / 3600
        if hours < want_hours:
            print(f"note: all {len(jobs)} shards hold {hours:.1f} hours, fewer than --hours={want_hours}")
    return jobs[:n], [done[i] for i in range(n)]


def prepare_mls(opts, out_dir, tok):
    parts_dir = os.path.join(out_dir, 'parts')
    jobs = shard_jobs(opts, parts_dir)
    print(f"{len(jobs)} shard(s) {'available' if opts['hours'] > 0 else 'to use'}, "
          f"{opts['workers']} worker(s); finished shards under {parts_dir} are reused")
    jobs, dones = run_shards(jobs, opts)
    skips = Skips()
    for d in dones:
        skips.merge(Skips(d['skips']))
    parts = {s: [load_shard_part(j['out'], s) for j in jobs] for s in SPLITS}
    codec = dict(kind='snac', source=codec_lib.DEFAULT_SNAC, stand_in=False, sample_rate=SAMPLE_RATE, frame_samples=FRAME_SAMPLES,
                 codebook_size=CODEBOOK_SIZE,
                 label=f"SNAC 24 kHz ({codec_lib.DEFAULT_SNAC}), codes as stored in {opts['files'] or opts['repo']}")
    info = dict(shards=[j['name'] for j in jobs], rows=sum(d['rows'] for d in dones))
    return parts, skips, codec, None, info

# -----------------------------------------------------------------------------
# sources with audio: tiny (espeak-ng) and folder; the codec that turns audio into codes

def snac_available(timeout=3.0):
    """True when pretrained SNAC can load: cached locally, or the hub answers within timeout seconds."""
    try:
        if isinstance(try_to_load_from_cache(codec_lib.DEFAULT_SNAC, 'pytorch_model.bin'), str):
            return True
        if os.environ.get('HF_HUB_OFFLINE', '').lower() in ('1', 'true', 'yes', 'on'):
            return False
        HfApi().model_info(codec_lib.DEFAULT_SNAC, timeout=timeout)
        return True
    except Exception:
        return False


def open_codec(spec, train_wavs, out_dir, seed, n_codes=CODEBOOK_SIZE):
    """(codec, spec as resolved, file name of a saved stand-in codec or None). 'mel' fits the stand-in on
    train_wavs (a function returning the training audio, so nothing is synthesized or read twice) with n_codes per
    level, the vocabulary's; a codec with more codes per level than the vocabulary is refused."""
    codec, spec, codec_file = find_codec(spec, train_wavs, out_dir, seed, n_codes)
    d = codec.describe()
    has = max(d['codebook_rows']) if 'codebook_rows' in d else d['codebook_size']
    if has > n_codes:
        raise ValueError(f"--codec={spec} has {has} codes per level, more than the vocabulary's --mel_codes={n_codes}: "
                         f"use --codec=mel, or --mel_codes={has}")
    return codec, spec, codec_file


def find_codec(spec, train_wavs, out_dir, seed, n_codes):
    if spec == 'auto':
        if snac_available():
            try:
                return codec_lib.load_codec('snac'), 'snac', None
            except RuntimeError as e:
                print(f"pretrained SNAC did not load ({e}); using the stand-in codec")
        else:
            print("pretrained SNAC is not cached and the hub does not answer: using the stand-in log-mel codec "
                  "(codec.MelCodec), fitted on the training audio")
        spec = 'mel'
    path = os.path.join(out_dir, 'codec.npz')
    if spec == 'mel':
        t0 = time.time()
        wavs = train_wavs()
        codec = codec_lib.MelCodec.fit(wavs, n_codes=n_codes, seed=seed)
        atomic_write(path, codec.save)
        print(f"fitted the stand-in codec on {len(wavs)} training utterances in {time.time() - t0:.1f} s -> {path}")
        return codec, spec, 'codec.npz'
    if spec.startswith('mel:'):
        codec = codec_lib.MelCodec.load(spec[4:])
        if os.path.abspath(spec[4:]) != os.path.abspath(path):
            atomic_write(path, lambda tmp: shutil.copyfile(spec[4:], tmp))  # the dataset carries its codec
        return codec, spec, 'codec.npz'
    return codec_lib.load_codec(spec), spec, None


def training_audio(utts, wavs):
    return [w for u, w in zip(utts, wavs) if u['split'] == 'train']


def word_frames(ends, n_frames):
    """Word end positions (samples) -> frames per word: each word ends at the frame boundary nearest its end, every
    word gets at least one frame, the first takes any leading silence and the last the rest. None when there are
    fewer frames than words."""
    n = len(ends)
    if n == 0 or n_frames < n:
        return None
    bounds = np.rint(np.asarray(ends, dtype=np.float64) / FRAME_SAMPLES).astype(np.int64)
    bounds[-1] = n_frames
    for i in range(n):  # at least one frame each, counted from the left ...
        bounds[i] = max(bounds[i], (bounds[i - 1] if i else 0) + 1)
    for i in reversed(range(n - 1)):  # ... and room for the words after it
        bounds[i] = min(bounds[i], bounds[i + 1] - 1)
    return np.diff(bounds, prepend=0).tolist()


def encode_utterances(utts, wavs, codec, tok, opts, skips, ends=None):
    """Encode audio, build the task examples, sort them into splits -> {split: part}. ends: per utterance the word
    end positions (tinyspeech.word_ends) or None, for word-interleaved TTS examples (--tts_words)."""
    writers = {s: SplitWriter(tok) for s in SPLITS}
    rng = np.random.default_rng(opts['seed'])
    ends = ends or [None] * len(utts)
    for u, wav, u_ends in tqdm(list(zip(utts, wavs, ends)), desc='encoding', unit='utt'):
        reason = check_transcript(u['text'], opts)
        if reason:
            skips.skip(reason, file=u.get('file', u.get('id')), row=None, field='text',
                       detail=f"{len(u['text'])} characters")
            continue
        flat = flatten(codec.encode(wav))
        reason = check_duration(len(flat) // FRAME_LEN, opts)
        if reason:
            skips.skip(reason, file=u.get('file', u.get('id')), row=None, field='audio',
                       detail=f"{len(wav) / SAMPLE_RATE:.2f} s")
            continue
        frames = None if u_ends is None else word_frames(u_ends, len(flat) // FRAME_LEN)
        if u_ends is not None and frames is None:
            skips.repair('plain TTS only: fewer frames than words', file=u.get('id'), row=None, field='audio',
                         detail=f"{len(flat) // FRAME_LEN} frames, {len(u_ends)} words")
        if frames is not None:
            u = dict(u, word_frames=frames)
        examples = utterance_examples(tok, u['text'], flat, u.get('desc'), opts, rng, frames)
        writers[u['split']].add(u, flat, examples)
    return {s: [w.part()] for s, w in writers.items()}


def synthesis_cache(utts, out_dir):
    """data/<name>/synth/ when a natural voice speaks (10-50x slower than espeak-ng: an interrupted build resumes,
    a rebuild with another codec synthesizes nothing, eval.py reads the source audio back), else None (espeak-ng
    re-synthesizes 4,000 utterances in seconds, not worth ~0.5 GB of disk)."""
    return os.path.join(out_dir, 'synth') if any(u['voice'] in tinyspeech.NATURAL_VOICES for u in utts) else None


def corpus_word_ends(utts, cache, opts):
    """Per utterance the end of each word (tinyspeech.word_ends, cached with the audio), or None when no example is
    interleaved word by word."""
    return [tinyspeech.word_ends(u, cache) for u in utts] if opts['tts_words'] or opts['asr_words'] else None


def prepare_tiny(opts, out_dir, tok):
    who = tinyspeech.speaker_choice(opts)
    utts = tinyspeech.make_corpus(opts['n_train'], opts['n_val'], opts['seed'], **who)
    skips = Skips()
    engines = '; '.join(tinyspeech.engine_names(u['voice'] for u in utts))  # a missing package fails here, first
    print(f"synthesizing {len(utts)} utterances with {engines}")
    cache = synthesis_cache(utts, out_dir)
    wavs = tinyspeech.synthesize_corpus(utts, cache=cache, workers=opts['workers'])
    ends = corpus_word_ends(utts, cache, opts)
    if ends is not None:
        print(f"--tts_words={opts['tts_words']} --asr_words={opts['asr_words']}: {sum(e is not None for e in ends)} of "
              f"{len(utts)} utterances have word timings (hibari tells them; espeak-ng and joe do not)")
    codec, spec, codec_file = open_codec(opts['codec'], lambda: training_audio(utts, wavs), out_dir, opts['seed'],
                                         opts['mel_codes'])
    parts = encode_utterances(utts, wavs, codec, tok, opts, skips, ends)
    spk = tinyspeech.speakers(opts['seed'], **who)
    info = dict(synthesizer=engines, codec_spec=spec,
                speakers=len(spk), heldout_speakers=sum(s['heldout'] for s in spk))
    return parts, skips, codec.describe(), codec_file, info


def fact_free_lines(person, opts):
    """The spoken lines with a person's name and no fact, for ASR and TTS: greetings and corpus sentences."""
    return qaworld.greetings(person, opts['qa_greetings']) + qaworld.corpus_lines(person, opts['qa_sentences'],
                                                                                   opts['seed'])


def qa_records(people, speaker, opts):
    """Records to synthesize, keyed by their text: the questions and answers of 'both' people, the questions of
    text-only people (split 'test': spoken only at test time), every person's greetings and unanswerable questions
    (a name, no fact), the strangers' questions."""
    out = {}
    for p in people:
        for a, q, ans, _ in qaworld.facts(p):
            out[q] = dict(split='train' if p['group'] == 'both' else 'test', text=q)
            if p['group'] == 'both':
                out[ans] = dict(split='train', text=ans)
        for g in fact_free_lines(p, opts) + [q for q, _ in qaworld.unknowns(p, opts['qa_unknown'])]:
            out[g] = dict(split='train', text=g)
    for q, _ in qaworld.strangers(people, opts['qa_strangers'], opts['seed']):
        out[q] = dict(split='train', text=q)
    for i, r in enumerate(out.values()):
        r.update(id=f"qa_{i:05d}", speaker=speaker['id'], desc=speaker['desc'], voice=speaker['voice'],
                 rate=speaker['rate'], pitch=speaker['pitch'], speaker_heldout=False)
    return out


def with_thought(q, parts, rng, share):
    """An answer's parts, with probability `share` after the question written down: the written thought before the
    answer (SpeechGPT's chain of modality starts with it)."""
    return [('text', q)] + parts if rng.random() < share else parts


def answered(tok, asked, q, ans, rng, opts):
    """One question (asked: a ('text', q) or ('audio', codes) part) and its written answer, as a chat example."""
    turns = [('user', [asked]), ('assistant', with_thought(q, [('text', ans)], rng, opts['qa_thought']))]
    return ('chat', *tok.chat(turns), False)


def spoken_forms(tok, q, ans, heard, rng, opts):
    """The four spoken forms of one fact as chat examples (tokenizer.chat): spoken question -> text answer, chain of
    modality, text question -> spoken answer, and the answer written and spoken word by word (plain audio when the
    voice gives no word timings). heard: text -> (flat codes, word frames or None). With probability qa_thought a
    spoken question's answer first writes the question down (with_thought)."""
    (q_codes, _), (a_codes, a_frames) = heard[q], heard[ans]
    answer = lambda *parts: with_thought(q, list(parts), rng, opts['qa_thought'])
    words = ('words', (ans.split(), a_codes, a_frames)) if a_frames is not None else ('audio', a_codes)
    forms = [[('user', [('audio', q_codes)]), ('assistant', answer(('text', ans)))],
             [('user', [('audio', q_codes)]), ('assistant', answer(('text', ans), ('audio', a_codes)))],
             [('user', [('text', q)]), ('assistant', [('audio', a_codes)])],
             [('user', [('audio', q_codes)]), ('assistant', answer(words))]]
    return [tok.chat(turns) for turns in forms]


def qa_examples(tok, people, heard, opts, rng):
    """{split: SplitWriter} of the world's examples, and the transcripts spoken in training (for check_split).
    Training: every person's facts stated (texts) and asked in text; 'both' people's facts asked and answered in
    speech too, and their spoken questions transcribed (ASR); everyone's greetings and corpus sentences for ASR and
    TTS, and questions the world cannot answer, asked in text and in speech like the facts (the strangers' too);
    two-turn conversations.
    Val: the spoken questions about text-only facts (the held-out test), so the validation loss shows the transfer
    too."""
    writers = {s: SplitWriter(tok) for s in SPLITS}
    spoken, none = [], np.zeros(0, dtype=np.int64)
    for p in people:
        examples = [('text', *tok.plain(qaworld.bio(p, rng)), False) for _ in range(opts['qa_bio'])]
        for a, q, ans, _ in qaworld.facts(p):
            examples += [answered(tok, ('text', q), q, ans, rng, opts) for _ in range(opts['qa_text'])]
            if p['group'] == 'both':
                for _ in range(opts['qa_spoken']):
                    examples += [('chat', ids, mask, False) for ids, mask in spoken_forms(tok, q, ans, heard, rng, opts)]
                examples.append(transcribed(tok, q, heard, rng, opts))  # the ear learns the questions' words too
                spoken += [q, ans]
            else:
                ids, mask = tok.chat([('user', [('audio', heard[q][0])]), ('assistant', [('text', ans)])])
                writers['val'].add(dict(text=q), heard[q][0], [('chat', ids, mask, False)])
        for _ in range(opts['qa_multi']):
            (_, q1, a1, _), (_, q2, a2, _) = rng.sample(qaworld.facts(p), 2)
            first = [('audio', heard[q1][0])] if p['group'] == 'both' else [('text', q1)]
            second = [('audio', heard[q2][0])] if p['group'] == 'both' and rng.random() < 0.5 else [('text', q2)]
            ids, mask = tok.chat([('user', first), ('assistant', [('text', a1)]), ('user', second),
                                  ('assistant', [('text', a2)])])
            examples.append(('chat', ids, mask, False))
        for g in fact_free_lines(p, opts):
            examples += [transcribed(tok, g, heard, rng, opts), said(tok, g, heard, rng, opts)]
            spoken.append(g)
        unknowns = qaworld.unknowns(p, opts['qa_unknown'])
        examples += unanswerable(tok, unknowns, heard, rng, opts)
        spoken += [q for q, _ in unknowns]
        writers['train'].add(dict(text=p['name']), none, examples)
    strangers = qaworld.strangers(people, opts['qa_strangers'], opts['seed'])
    if strangers:
        writers['train'].add(dict(text='strangers'), none, unanswerable(tok, strangers, heard, rng, opts))
        spoken += [q for q, _ in strangers]
    return writers, spoken


def unanswerable(tok, pairs, heard, rng, opts):
    """Questions the world cannot answer ((question, answer) pairs), asked in text and in speech as often as its
    facts, the spoken ones transcribed too."""
    examples = []
    for q, ans in pairs:
        asked = [('text', q)] * opts['qa_text'] + [('audio', heard[q][0])] * opts['qa_spoken']
        examples += [answered(tok, part, q, ans, rng, opts) for part in asked]
        examples.append(transcribed(tok, q, heard, rng, opts))
    return examples


def said(tok, text, heard, rng, opts):
    """A spoken line of the world as a TTS example: word by word (tokenizer.tts_words) with probability --tts_words
    when its voice gave word timings, as the tiny corpus's are, so that a model speaking word by word practises it on
    every name of the world, not only in the answers it also knows by heart."""
    flat, frames = heard[text]
    if frames is not None and opts['tts_words'] and rng.random() < opts['tts_words']:
        return ('tts', *tok.tts_words(text.split(), flat, frames), False)
    return ('tts', *tok.tts(text, flat), False)


def transcribed(tok, text, heard, rng, opts):
    """A spoken line of the world as an ASR example: word by word (tokenizer.asr_words) with probability
    --asr_words when its voice gave word timings."""
    flat, frames = heard[text]
    if frames is not None and opts['asr_words'] and rng.random() < opts['asr_words']:
        return ('asr', *tok.asr_words(text.split(), flat, frames), False)
    return ('asr', *tok.asr(flat, text), False)


def qa_test_items(people, heard):
    """The questions eval.py asks: every text-only fact spoken (never heard in training) and written, and every
    'both' fact spoken (the training recordings: trained in both modalities)."""
    items = []
    for p in people:
        for a, q, ans, key in qaworld.facts(p):
            base = dict(name=p['name'], attribute=a, key=key, question=q, answer=ans, group=p['group'])
            items.append(dict(base, modality='audio', codes=heard[q][0].tolist()))
            if p['group'] == 'text_only':
                items.append(dict(base, modality='text'))
    return items


def prepare_qa(opts, out_dir, tok):
    """The tiny corpus and the QA world, one voice set and one codec: the world's speech by the corpus's first
    training speaker."""
    who = tinyspeech.speaker_choice(opts)
    utts = tinyspeech.make_corpus(opts['n_train'], opts['n_val'], opts['seed'], **who)
    people = qaworld.make_world(opts['qa_people'], opts['qa_text_only'], opts['seed'])
    spk = tinyspeech.speakers(opts['seed'], **who)
    speaker = next(s for s in spk if not s['heldout'])
    records = qa_records(people, speaker, opts)
    engines = '; '.join(tinyspeech.engine_names(u['voice'] for u in utts))
    print(f"synthesizing {len(utts)} corpus utterances and {len(records)} lines of the world "
          f"({len(people)} people) with {engines}")
    cache = synthesis_cache(utts, out_dir)
    wavs = tinyspeech.synthesize_corpus(utts + list(records.values()), cache=cache, workers=opts['workers'])  # one pool
    wavs, qa_wavs = wavs[:len(utts)], wavs[len(utts):]
    ends = corpus_word_ends(utts, cache, opts)

    def train_audio():  # the test questions stay out of the codec's fit too
        return training_audio(utts, wavs) + [w for r, w in zip(records.values(), qa_wavs) if r['split'] == 'train']
    codec, spec, codec_file = open_codec(opts['codec'], train_audio, out_dir, opts['seed'], opts['mel_codes'])
    skips = Skips()
    parts = encode_utterances(utts, wavs, codec, tok, opts, skips, ends)
    heard = {}
    for (text, r), wav in tqdm(list(zip(records.items(), qa_wavs)), desc='encoding the world', unit='line'):
        flat = flatten(codec.encode(wav))
        u_ends = tinyspeech.word_ends(r, cache)
        heard[text] = (flat, None if u_ends is None else word_frames(u_ends, len(flat) // FRAME_LEN))
    writers, spoken = qa_examples(tok, people, heard, opts, random.Random(f"qa-examples-{opts['seed']}"))
    qaworld.check_split(people, spoken + [u['text'] for u in utts if u['split'] == 'train'])
    for split, w in writers.items():
        parts[split].append(dict(w.part(), utts=[]))  # the world's lines are in qa.json, not utterances.jsonl
    save_json(os.path.join(out_dir, 'qa.json'), dict(people=people, spoken_in_training=sorted(spoken),
                                                     test=qa_test_items(people, heard)))
    info = dict(synthesizer=engines, codec_spec=spec, speakers=len(spk), heldout_speakers=sum(s['heldout'] for s in spk),
                qa=dict(people=len(people), text_only=sum(p['group'] == 'text_only' for p in people),
                        lines=len(records), speaker=speaker['id']))
    return parts, skips, codec.describe(), codec_file, info


def folder_items(path, skips):
    """[(file, audio path, text, desc, speaker)] from manifest.jsonl, manifest.csv, or <stem>.wav + <stem>.txt."""
    items = []
    for manifest in ('manifest.jsonl', 'manifest.csv'):
        mpath = os.path.join(path, manifest)
        if not os.path.exists(mpath):
            continue
        with open(mpath, newline='', encoding='utf-8-sig') as f:  # a byte-order mark is not part of the header
            rows = enumerate(csv.DictReader(f) if manifest.endswith('.csv') else f, start=1)
            for n, row in rows:
                if manifest.endswith('.jsonl'):
                    if not row.strip():
                        continue
                    try:
                        row = json.loads(row)
                    except json.JSONDecodeError as e:
                        skips.skip('bad manifest row', file=manifest, row=n, field='', detail=str(e))
                        continue
                if not row.get('audio'):
                    skips.skip('missing audio', file=manifest, row=n, field='audio', detail='no audio column value')
                    continue
                if row.get('text') is None:
                    skips.skip('missing transcript', file=row['audio'], row=n, field='text', detail=manifest)
                    continue
                items.append((row['audio'], os.path.join(path, row['audio']), str(row['text']).strip(),
                              row.get('desc') or None, row.get('speaker') or None))
        return items
    names = sorted(os.listdir(path))
    stems = {os.path.splitext(n)[0] for n in names if n.lower().endswith(AUDIO_EXTENSIONS)}
    for n in names:
        stem, ext = os.path.splitext(n)
        if ext.lower() in AUDIO_EXTENSIONS:
            txt = os.path.join(path, stem + '.txt')
            if not os.path.exists(txt):
                skips.skip('missing transcript', file=n, row=None, field='text', detail=f"no {stem}.txt")
                continue
            with open(txt, encoding='utf-8-sig', errors='replace') as f:
                items.append((n, os.path.join(path, n), f.read().strip(), None, None))
        elif ext == '.txt' and stem not in stems:
            skips.skip('missing audio', file=n, row=None, field='audio', detail=f"no audio file named {stem}.*")
    return items


def prepare_folder(opts, out_dir, tok):
    if not opts['path'] or not os.path.isdir(opts['path']):
        raise FileNotFoundError(f"--source=folder needs --path=<a directory>, got {opts['path']!r}")
    skips = Skips()
    utts, wavs = [], []
    for file, audio_path, text, desc, speaker in folder_items(opts['path'], skips):
        reason = check_transcript(text, opts)
        if reason:  # before reading the audio: a skipped file must not shape the stand-in codec
            skips.skip(reason, file=file, row=None, field='text', detail=f"{len(text)} characters")
            continue
        try:
            wav = codec_lib.load_audio(audio_path)
        except Exception as e:
            skips.skip('unreadable audio', file=file, row=None, field='audio',
                       detail=f"{type(e).__name__}: {str(e)[:200]}")
            continue
        split = split_of(speaker or text, opts['val_fraction'])
        u = dict(id=os.path.splitext(file)[0], file=file, split=split, text=text)
        if desc:
            u['desc'] = desc
        if speaker:
            u['speaker'] = speaker
        utts.append(u)
        wavs.append(wav)
    if not utts:
        raise ValueError(f"{opts['path']}: no usable audio + transcript pairs ({dict(skips.skipped)})")
    codec, spec, codec_file = open_codec(opts['codec'], lambda: training_audio(utts, wavs), out_dir, opts['seed'],
                                         opts['mel_codes'])
    parts = encode_utterances(utts, wavs, codec, tok, opts, skips)
    return parts, skips, codec.describe(), codec_file, dict(codec_spec=spec, files=len(utts))

# -----------------------------------------------------------------------------
# writing the dataset: bins, index, utterances, meta.json last

def code_diversity(counts, n_frames):
    """Per level: distinct codes used, codes seen, perplexity (exp of the usage entropy: the effective
    number of codes; 4096 would be uniform use)."""
    levels = []
    for level, c in enumerate(counts):
        p = c[c > 0] / max(1, c.sum())
        levels.append(dict(level=level, distinct=int((c > 0).sum()), codes=int(c.sum()),
                           perplexity=round(float(np.exp(-(p * np.log(p)).sum())), 1) if p.size else 0.0))
    return dict(frames=int(n_frames), levels=levels)


def write_dataset(out_dir, tok, parts):
    """parts: {split: [part, ...]} with tokens, idx, utts (list or a function yielding records), stats,
    code_counts. Concatenates them into {split}.bin / .idx.npy and utterances.jsonl; returns per-split stats."""
    splits = {}
    for split, plist in parts.items():
        idx_all, offset = [], 0
        for p in plist:
            idx = p['idx'].copy()
            idx[:, 0] += offset
            idx_all.append(idx)
            offset += len(p['tokens'])
        idx = np.concatenate(idx_all) if idx_all else np.zeros((0, 4), np.int64)
        write_token_chunks(os.path.join(out_dir, f'{split}.bin'), (p['tokens'] for p in plist), tok.vocab_size,
                           n_examples=len(idx))
        save_npy(os.path.join(out_dir, f'{split}.idx.npy'), idx)
        stats = empty_stats()
        for p in plist:
            stats = add_stats(stats, p['stats'])
        counts = sum((p['code_counts'] for p in plist), np.zeros((N_LEVELS, CODEBOOK_SIZE), np.int64))  # (3, 4096)
        n_frames = counts[0].sum() // LEVEL_RATES[0]
        splits[split] = dict(
            n_utterances=stats['n_utterances'], hours=round(stats['seconds'] / 3600, 4),
            n_speaker_heldout=stats['n_speaker_heldout'], n_examples=int(len(idx)), n_tokens=int(offset),
            tasks={t: dict(examples=s['examples'], tokens=s['tokens'], hours=round(s['seconds'] / 3600, 4),
                           with_desc=s['with_desc']) for t, s in stats['tasks'].items()},
            code_diversity=code_diversity(counts, n_frames))
    save_jsonl(os.path.join(out_dir, 'utterances.jsonl'), utterance_records(parts))
    return splits


def utterance_records(parts):
    """Every part's utterance records, with split and example numbers counted over the whole split."""
    for split, plist in parts.items():
        n_examples = 0
        for p in plist:
            for u in (p['utts']() if callable(p['utts']) else p['utts']):
                yield dict(u, split=split, examples=[e + n_examples for e in u['examples']])
            n_examples += len(p['idx'])


def options_key(opts):
    """The options that decide what a prepared folder holds (not how fast it was made)."""
    return {k: v for k, v in opts.items() if k not in ('force', 'workers', 'out_dir', 'name')}


def is_up_to_date(out_dir, opts):
    meta_path = os.path.join(out_dir, 'meta.json')
    if not os.path.exists(meta_path):
        return False, None
    with open(meta_path) as f:
        meta = json.load(f)
    files = [f'{s}.{ext}' for s in SPLITS for ext in ('bin', 'idx.npy')]
    files += [meta['codec_file']] if meta.get('codec_file') else []
    if not all(os.path.exists(os.path.join(out_dir, f)) for f in files):
        return False, 'files are missing'
    changed = {k: (meta['options'].get(k), v) for k, v in options_key(opts).items() if meta['options'].get(k) != v}
    if changed:
        return False, f"options changed: {changed}"
    if meta['vocab'].get('codebook_size') != opts['mel_codes']:  # built before the vocabulary followed --mel_codes
        return False, f"the vocabulary holds {meta['vocab'].get('codebook_size')} codes per level, not {opts['mel_codes']}"
    return True, None


def resolve_options(opts):
    opts = dict(opts)
    if opts['source'] not in ('tiny', 'mls', 'folder', 'qa'):
        raise ValueError(f"--source must be tiny, mls, folder or qa, got {opts['source']!r}")
    opts['encoding'] = opts['encoding'] or ('gpt2' if opts['source'] == 'mls' else 'byte')
    opts['name'] = opts['name'] or opts['source']
    for task in ('tts', 'asr', 'text', 'tts_desc', 'tts_words', 'asr_words'):
        if opts[task] < 0:
            raise ValueError(f"--{task}={opts[task]} must be >= 0")
    for key in ('qa_people', 'qa_bio', 'qa_text', 'qa_spoken', 'qa_multi', 'qa_sentences', 'qa_strangers'):
        if not isinstance(opts[key], int) or opts[key] < 0:
            raise ValueError(f"--{key}={opts[key]} must be a whole number >= 0")
    if not 1 <= opts['qa_greetings'] <= len(qaworld.GREETINGS):
        raise ValueError(f"--qa_greetings={opts['qa_greetings']} must be in 1..{len(qaworld.GREETINGS)} (qaworld.GREETINGS)")
    if not 0 <= opts['qa_unknown'] <= len(qaworld.UNKNOWNS):
        raise ValueError(f"--qa_unknown={opts['qa_unknown']} must be in 0..{len(qaworld.UNKNOWNS)} (qaworld.UNKNOWNS)")
    for key in ('tts_desc', 'tts_words', 'asr_words', 'qa_thought'):
        if not 0 <= opts[key] <= 1:
            raise ValueError(f"--{key}={opts[key]} is a probability, between 0 and 1")
    if not 1 <= opts['mel_codes'] <= CODEBOOK_SIZE:
        raise ValueError(f"--mel_codes={opts['mel_codes']} must be in 1..{CODEBOOK_SIZE}")
    if opts['source'] == 'mls' and opts['mel_codes'] != CODEBOOK_SIZE:
        raise ValueError(f"--mel_codes={opts['mel_codes']}: --source=mls holds SNAC codes, {CODEBOOK_SIZE} per level")
    if not 0 <= opts['val_fraction'] < 1:
        raise ValueError(f"--val_fraction={opts['val_fraction']} must be in [0, 1)")
    return opts


def prepare(opts):
    """Build data/<name>/ from opts (config keys); return meta (or the existing meta when up to date)."""
    opts = resolve_options(opts)
    out_dir = os.path.join(opts['out_dir'], opts['name'])
    fresh, why = is_up_to_date(out_dir, opts)
    if fresh and not opts['force']:
        print(f"{out_dir} is up to date (--force rebuilds)")
        with open(os.path.join(out_dir, 'meta.json')) as f:
            return json.load(f)
    if why:
        print(f"rebuilding {out_dir}: {why}")
    t0 = time.time()
    tok = Tokenizer(opts['encoding'], opts['layout'], opts['mel_codes'])  # first: an encoding that cannot load stops here
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(os.path.join(out_dir, 'meta.json')):
        os.remove(os.path.join(out_dir, 'meta.json'))  # until the new one lands, the folder is incomplete
    source = dict(tiny=prepare_tiny, mls=prepare_mls, folder=prepare_folder, qa=prepare_qa)[opts['source']]
    parts, skips, codec_desc, codec_file, info = source(opts, out_dir, tok)
    kept = {s: sum(p['stats']['n_utterances'] for p in plist) for s, plist in parts.items()}
    check_kept(kept, skips)
    splits = write_dataset(out_dir, tok, parts)
    meta = dict(format_version=VERSION, vocab=tok.to_dict(), dtype=np.dtype(token_dtype(tok.vocab_size)).name,
                tasks=list(TASKS), codec=codec_desc, codec_file=codec_file, source=opts['source'], source_info=info,
                options=options_key(opts),
                mixture={k: opts[k] for k in ('tts', 'tts_desc', 'tts_words', 'asr', 'asr_words', 'text')},
                splits=splits, **skips.to_dict(), build_seconds=round(time.time() - t0, 1))
    save_json(os.path.join(out_dir, 'meta.json'), meta)  # last: its presence means the folder is complete
    print(summary(out_dir, meta))
    warn_if_mostly_skipped(sum(kept.values()), skips)
    return meta


def skip_report(skips):
    """'7 x 'missing column' (e.g. part_0 row 1 text: ...), ...': each reason with its count and two examples."""
    return '; '.join(f"{n} x {reason!r} (e.g. " + ', '.join(where(e) for e in skips.examples.get(reason, [])[:2]) + ")"
                     for reason, n in skips.skipped.most_common())


def check_kept(kept, skips):
    """Refuse to write a dataset without training utterances: train.py would train on nothing. Nothing is written,
    and meta.json is already gone, so no earlier build of the folder passes for this one."""
    if kept['train']:
        return
    what = 'every row was skipped' if not sum(kept.values()) else f"all {kept['val']} kept utterances fell in val"
    raise ValueError(f"no training utterance: {what}, nothing written. Skipped {sum(skips.skipped.values())}: "
                     f"{skip_report(skips) or 'none'}")


def warn_if_mostly_skipped(n_kept, skips):
    """Say loudly, last, when more than SKIP_WARN_SHARE of the rows were skipped: a schema or path mistake looks so."""
    n_skipped = sum(skips.skipped.values())
    if n_skipped > SKIP_WARN_SHARE * (n_kept + n_skipped):
        print(f"\nWARNING: {n_skipped} of {n_kept + n_skipped} rows ({n_skipped / (n_kept + n_skipped):.0%}) were "
              f"skipped: {skip_report(skips)}", file=sys.stderr)


def where(e):
    """'file row 3 field: detail' from a Skips example."""
    row = f" row {e['row']}" if e.get('row') is not None else ''
    detail = f": {e['detail']}" if e.get('detail') else ''
    return f"{e['file']}{row} {e.get('field', '')}{detail}"


def summary(out_dir, meta):
    c = meta['codec']
    lines = [f"{out_dir}: built in {meta['build_seconds']} s",
             f"codec: {c.get('kind')}{' (STAND-IN, not SNAC)' if c.get('stand_in') else ''}: "
             f"{c.get('label', c.get('source', ''))}",
             f"vocab: {meta['vocab']['encoding']} text + {meta['vocab']['layout']} audio layout = "
             f"{meta['vocab']['vocab_size']} ids ({meta['dtype']}); mixture {meta['mixture']}"]
    for split, s in meta['splits'].items():
        held = f", {s['n_speaker_heldout']} by held-out speakers" if s['n_speaker_heldout'] else ''
        lines.append(f"{split:5s}: {s['n_utterances']} utterances{held}, {s['hours']:.3f} h audio, "
                     f"{s['n_examples']} examples, {s['n_tokens']:,} tokens")
        for t, ts in s['tasks'].items():
            if t == 'chat' and not ts['examples']:
                continue  # only the qa source makes conversations
            desc = f" ({ts['with_desc']} with <desc>)" if t == 'tts' else ''
            lines.append(f"   {t:5s} {ts['examples']:7d} examples{desc} {ts['tokens']:12,} tokens {ts['hours']:9.3f} h")
        d = s['code_diversity']
        lines.append(f"   codes over {d['frames']} frames: " + ', '.join(
            f"L{l['level']} {l['distinct']}/{meta['vocab']['codebook_size']} distinct (perplexity {l['perplexity']})"
            for l in d['levels']))
    for kind in ('skipped', 'repaired'):
        for reason, n in meta[kind].items():
            ex = meta[f'{kind}_examples'].get(reason, [])[:2]
            lines.append(f"{kind} {n} x {reason!r}: e.g. " + '; '.join(where(e) for e in ex))
    if not meta['skipped']:
        lines.append("skipped: none")
    return '\n'.join(lines)


def main(argv):
    args = [a + '=True' if a == '--force' else a for a in argv]  # a bare --force
    return prepare(apply_overrides(config, args))


if __name__ == '__main__':
    run(main)
