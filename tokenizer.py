"""
The joint vocabulary: text tokens (tiktoken), a few special tokens, then SNAC audio codes.
This file is the one home of the SNAC frame layout; every other file imports it from here.

SNAC 24 kHz gives three code levels at 1:2:4 rates (~12, ~23, ~47 Hz). One coarse frame
(2048 samples = 85.3 ms) holds 1 + 2 + 4 = 7 codes, flattened depth-first:

    level 0:  a                        position: 0
    level 1:  b         e                        1, 4
    level 2:  c   d     f   g                    2, 3, 5, 6
    frame  =  [a, b, c, d, e, f, g]  =  L0[i], L1[2i], L2[4i], L2[4i+1], L1[2i+1], L2[4i+2], L2[4i+3]

Vocabulary layout (ids, low to high):
    [0, n_text)                          text ids from the tiktoken encoding
    [n_text, n_text + N_SPECIAL)         special tokens (SPECIALS below)
    [audio_offset, vocab_size)           audio codes, in one of two layouts:
        'level':    one range of 4096 per level (3 x 4096 ids; a level's positions share embeddings)
        'position': one range of 4096 per frame position (7 x 4096 ids, as Orpheus-TTS does)
    A stand-in codec with fewer codes per level (prepare.py --mel_codes=256) gets ranges of that size instead.

Run it to print a vocabulary and a TTS example:  python tokenizer.py --encoding=byte --layout=level
"""
import numpy as np
import tiktoken

from configurator import apply_overrides, run

# -----------------------------------------------------------------------------
# SNAC 24 kHz layout constants (the only place they are written)

SAMPLE_RATE = 24000          # SNAC 24 kHz
HOP = 512                    # samples per finest (level 2) step
N_LEVELS = 3                 # RVQ levels
CODEBOOK_SIZE = 4096         # codes per level
LEVEL_RATES = (1, 2, 4)      # codes per coarse frame, per level
FRAME_LEN = sum(LEVEL_RATES)  # 7 tokens per coarse frame
FRAME_SAMPLES = HOP * LEVEL_RATES[-1]  # 2048 samples per coarse frame
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE  # 0.0853 s
# (level, index within the frame's codes of that level) for each of the 7 positions, depth-first
FRAME_ORDER = ((0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (2, 2), (2, 3))
POSITION_LEVEL = tuple(level for level, _ in FRAME_ORDER)  # (0, 1, 2, 2, 1, 2, 2)

SPECIALS = ('<eos>', '<text>', '<audio>', '<desc>', '<pad>',
            '<user>', '<assistant>', '<system>', '<reserved0>', '<reserved1>')  # roles reserved for chat
N_SPECIAL = len(SPECIALS)
LAYOUTS = {'level': N_LEVELS, 'position': FRAME_LEN}  # layout name -> number of code ranges
ENCODINGS = ('byte', 'gpt2', 'cl100k_base')
TASKS = ('tts', 'asr', 'text', 'chat')
ROLES = ('user', 'assistant', 'system')

# -----------------------------------------------------------------------------
# flatten / unflatten: exact inverses, strict about shapes and ranges

def check_codes(codes, where='codes', size=CODEBOOK_SIZE):
    """Raise ValueError unless codes is an int array with every value in 0..size - 1."""
    codes = np.asarray(codes)
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{where}: codes must be integers, got dtype {codes.dtype}")
    bad = np.flatnonzero((codes < 0) | (codes >= size))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: code {int(codes.flat[i])} at index {i} is outside 0..{size - 1}"
                         f" ({bad.size} such codes)")
    return codes.astype(np.int64)


def flatten(levels):
    """[L0 (T,), L1 (2T,), L2 (4T,)] -> (7T,) raw codes in depth-first frame order."""
    if len(levels) != N_LEVELS:
        raise ValueError(f"expected {N_LEVELS} code levels, got {len(levels)}")
    levels = [check_codes(np.asarray(l).reshape(-1), f"level {k}") for k, l in enumerate(levels)]
    T = len(levels[0])
    for k, rate in enumerate(LEVEL_RATES):
        if len(levels[k]) != rate * T:
            raise ValueError(f"level lengths must be 1:2:4, got {[len(l) for l in levels]} "
                             f"(level {k} should have {rate * T} codes)")
    per_frame = [l.reshape(T, rate) for l, rate in zip(levels, LEVEL_RATES)]  # (T, rate) each
    cols = [per_frame[level][:, j] for level, j in FRAME_ORDER]
    return np.stack(cols, axis=1).reshape(-1)  # (T, 7) -> (7T,)


def unflatten(flat):
    """(7T,) raw codes in depth-first frame order -> [L0 (T,), L1 (2T,), L2 (4T,)]."""
    flat = check_codes(np.asarray(flat).reshape(-1), 'flat codes')
    if len(flat) % FRAME_LEN:
        raise ValueError(f"{len(flat)} codes is not a whole number of {FRAME_LEN}-code frames "
                         f"({len(flat) % FRAME_LEN} left over)")
    frames = flat.reshape(-1, FRAME_LEN)  # (T, 7)
    levels = []
    for level, rate in enumerate(LEVEL_RATES):
        cols = [p for p, (lv, _) in enumerate(FRAME_ORDER) if lv == level]  # in j order by construction
        levels.append(np.ascontiguousarray(frames[:, cols]).reshape(-1))
    return levels

# -----------------------------------------------------------------------------
# text encodings

def byte_encoding():
    """A tiktoken encoding over the 256 single bytes: builds locally, no download."""
    return tiktoken.Encoding(name='byte', pat_str=r"[\s\S]",
                             mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={})


def get_encoding(name):
    if name not in ENCODINGS:
        raise ValueError(f"unknown text encoding {name!r}; choose one of {ENCODINGS}")
    if name == 'byte':
        return byte_encoding()
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken fetches its BPE files on first use
        raise RuntimeError(f"could not load tiktoken encoding {name!r} ({type(e).__name__}: {e}). "
                           f"It downloads its files on first use; offline, use --encoding=byte") from e

# -----------------------------------------------------------------------------
# the joint vocabulary

class Tokenizer:
    """Text + special + audio ids. Build from names, or from the dict that to_dict() wrote. codebook_size: codes
    per level that get ids, SNAC's 4096 or fewer for a stand-in codec fitted with fewer (prepare.py --mel_codes): the
    output layer shrinks with it (with 256 codes small models trained 1.2-1.4x faster: docs/results.md)."""

    def __init__(self, encoding='byte', layout='level', codebook_size=CODEBOOK_SIZE):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown audio layout {layout!r}; choose one of {tuple(LAYOUTS)}")
        if not 1 <= codebook_size <= CODEBOOK_SIZE:
            raise ValueError(f"codebook_size={codebook_size}: must be in 1..{CODEBOOK_SIZE}")
        self.encoding, self.layout, self.codebook_size = encoding, layout, codebook_size
        self.enc = get_encoding(encoding)
        self.n_text = self.enc.n_vocab
        self.special = {name: self.n_text + i for i, name in enumerate(SPECIALS)}
        self.eos, self.text, self.audio, self.desc, self.pad = (self.special[s] for s in SPECIALS[:5])
        self.audio_offset = self.n_text + N_SPECIAL
        self.n_audio = LAYOUTS[layout] * codebook_size
        self.vocab_size = self.audio_offset + self.n_audio
        # first id of the code range used at each of the 7 frame positions
        ranges = POSITION_LEVEL if layout == 'level' else range(FRAME_LEN)
        self.position_offset = np.array([self.audio_offset + r * codebook_size for r in ranges], dtype=np.int64)

    # --- description, carried by meta.json and every checkpoint
    def to_dict(self):
        return dict(encoding=self.encoding, layout=self.layout, n_text=self.n_text, special=self.special,
                    audio_offset=self.audio_offset, codebook_size=self.codebook_size, frame_len=FRAME_LEN,
                    vocab_size=self.vocab_size)

    @classmethod
    def from_dict(cls, d):
        tok = cls(d['encoding'], d['layout'], d.get('codebook_size', CODEBOOK_SIZE))
        if tok.to_dict() != {**d, 'special': {k: int(v) for k, v in d['special'].items()}}:
            raise ValueError(f"vocabulary description does not rebuild: stored {d}, rebuilt {tok.to_dict()}")
        return tok

    def __eq__(self, other):
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    # --- text
    def encode_text(self, s):
        return self.enc.encode_ordinary(s)

    def decode_text(self, ids):
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.n_text]
        if bad:
            raise ValueError(f"id {bad[0]} is not a text id (text ids are 0..{self.n_text - 1})")
        return self.enc.decode(ids, errors='replace')

    # --- audio
    def is_audio(self, ids):
        ids = np.asarray(ids)
        return (ids >= self.audio_offset) & (ids < self.vocab_size)

    def audio_ids(self, flat):
        """(7T,) raw codes -> (7T,) vocabulary ids."""
        flat = check_codes(np.asarray(flat).reshape(-1), 'flat codes', self.codebook_size)
        if len(flat) % FRAME_LEN:
            raise ValueError(f"{len(flat)} codes is not a whole number of {FRAME_LEN}-code frames")
        pos = np.arange(len(flat)) % FRAME_LEN
        return flat + self.position_offset[pos]

    def audio_codes(self, ids, start_position=0):
        """(7T,) vocabulary ids of an audio span -> (7T,) raw codes. Every id must be the right range
        for its frame position; start_position is the frame position of ids[0]."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = (np.arange(len(ids)) + start_position) % FRAME_LEN
        codes = ids - self.position_offset[pos]
        bad = np.flatnonzero((codes < 0) | (codes >= self.codebook_size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"id {int(ids[i])} at index {i} of the audio span is not an audio id for frame "
                             f"position {pos[i]} (expects {self.position_offset[pos[i]]}.."
                             f"{self.position_offset[pos[i]] + self.codebook_size - 1})")
        return codes

    def legal_audio_range(self, position):
        """[lo, hi) of the ids allowed at frame position 0..6: the grammar mask uses it."""
        lo = int(self.position_offset[position])
        return lo, lo + self.codebook_size

    # --- task sequences, built here and only here
    def tts(self, text, flat_codes, desc=None):
        """<desc> d <text> t <audio> codes <eos>; the target span is the audio and <eos>."""
        prefix = ([self.desc] + self.encode_text(desc) if desc else []) + [self.text] + self.encode_text(text) + [self.audio]
        return self._example(prefix, list(self.audio_ids(flat_codes)) + [self.eos])

    def asr(self, flat_codes, text):
        """<audio> codes <text> t <eos>; the target span is the transcript and <eos>."""
        prefix = [self.audio] + list(self.audio_ids(flat_codes)) + [self.text]
        return self._example(prefix, self.encode_text(text) + [self.eos])

    def plain(self, text):
        """<text> t <eos>; every token after the marker is a target."""
        return self._example([self.text], self.encode_text(text) + [self.eos])

    def tts_words(self, words, flat_codes, word_frames, desc=None):
        """TTS interleaved word by word: each word's text, then its audio, so the model only ever has to say the
        word it has just read (Spirit-LM and Moshi interleave text and speech for the same reason):
            <desc> d <text> w1 <audio> w1's frames <text> ' w2' <audio> w2's frames ... <eos>
        word_frames: frames per word (each >= 1, summing to the codes' frames). The target span starts with the first
        audio code and runs to the end: the later words' text is predicted too, but generation forces it."""
        spans = self.word_spans(words, flat_codes, word_frames)
        target = []
        for k, (word, audio) in enumerate(spans):
            if k:
                target += [self.text] + self.encode_text(word) + [self.audio]
            target += audio
        return self._example(list(self.tts_words_prompt(words, desc)), target + [self.eos])

    def asr_words(self, words, flat_codes, word_frames):
        """ASR interleaved word by word, each word's audio then its text: the transcript of a word right after its
        sound, so the ear learns what each word sounds like without first having to find it in the utterance:
            <audio> w1's frames <text> w1 <audio> w2's frames <text> ' w2' ... <eos>
        The target is the text, as in asr(): the audio after the first word is in the target span, but
        asr_target() keeps the loss off it."""
        spans = self.word_spans(words, flat_codes, word_frames)
        prefix = [self.audio] + spans[0][1] + [self.text]
        target = self.encode_text(spans[0][0])
        for word, audio in spans[1:]:
            target += [self.audio] + audio + [self.text] + self.encode_text(word)
        ids, _ = self._example(prefix, target + [self.eos])
        return ids, self.asr_target(ids, len(prefix))

    def asr_target(self, ids, target_start):
        """Where an ASR example's loss is taken: its transcript after target_start, never the audio
        (asr_words() puts the later words' audio there)."""
        ids = np.asarray(ids)
        mask = np.zeros(len(ids), dtype=bool)
        mask[target_start:] = True
        return mask & ~self.is_audio(ids) & (ids != self.audio)

    def word_spans(self, words, flat_codes, word_frames):
        """[(' word' (the first without the space), [audio ids of its frames])]; word_frames: frames per word, each
        >= 1, summing to the codes' frames."""
        flat_codes = np.asarray(flat_codes).reshape(-1)
        if len(words) != len(word_frames) or min(word_frames, default=0) < 1 or \
                sum(word_frames) * FRAME_LEN != len(flat_codes):
            raise ValueError(f"{len(words)} words with frames {list(word_frames)} do not cover "
                             f"{len(flat_codes) / FRAME_LEN:g} frames of codes, each word at least one")
        ends = np.cumsum(word_frames) * FRAME_LEN
        return [((' ' if k else '') + w, list(self.audio_ids(flat_codes[e - n * FRAME_LEN:e])))
                for k, (w, n, e) in enumerate(zip(words, word_frames, ends))]

    def tts_words_prompt(self, words, desc=None):
        """What tts_words() starts with: the description, the first word's text and <audio>."""
        return self.tts(words[0], np.zeros(0, dtype=np.int64), desc)[0][:-1]

    # --- chat: turns of text and audio, the loss on the assistant's turns only
    def chat(self, turns):
        """A conversation, [(role, parts)] with role in ROLES and parts [(kind, content)]: ('text', str),
        ('audio', flat codes) or ('words', (words, flat codes, word_frames)) for speech interleaved word by word as
        in tts_words(). Each turn is its role marker, then its parts; an assistant turn ends with <eos>:
            <user> <audio> q                 <assistant> <text> a <eos>                spoken question, text answer
            <user> <audio> q                 <assistant> <text> a <audio> a' <eos>     chain of modality (SpeechGPT)
            <user> <text> q                  <assistant> <audio> a' <eos>              text question, spoken answer
            <user> <audio> q                 <assistant> <text> w1 <audio> .. <text> ' w2' <audio> .. <eos>
        (the last: the answer spoken while it is written, word by word, as Mini-Omni talks while it thinks).
        The target is what the assistant says and the <eos> that ends its turn (assistant_mask); the role markers
        and the user's and system's turns are context, never targets."""
        ids = []
        for n, (role, parts) in enumerate(turns):
            if role not in ROLES:
                raise ValueError(f"turn {n + 1}: unknown role {role!r}; choose one of {ROLES}")
            if not parts:
                raise ValueError(f"turn {n + 1} ({role}) is empty")
            ids.append(self.special[f'<{role}>'])
            for kind, content in parts:
                if kind == 'text':
                    ids += [self.text] + self.encode_text(content)
                elif kind == 'audio':
                    if len(content) == 0:
                        raise ValueError(f"turn {n + 1} ({role}): an empty audio part")
                    ids += [self.audio] + list(self.audio_ids(content))
                elif kind == 'words':
                    words, flat, frames = content
                    ids += list(self.tts_words(words, flat, frames)[0][:-1])  # its <text> w1 <audio> ... , no <eos>
                else:
                    raise ValueError(f"turn {n + 1} ({role}): unknown part kind {kind!r}; choose text, audio or words")
            if role == 'assistant':
                ids.append(self.eos)
        ids = np.array(ids, dtype=np.int64)
        return ids, self.assistant_mask(ids)

    def chat_prompt(self, turns):
        """The ids that ask for the next assistant turn: the turns so far, then <assistant>."""
        return np.append(self.chat(turns)[0], self.special['<assistant>'])

    def assistant_mask(self, ids):
        """True on the tokens an assistant turn says: from just after <assistant> to the turn's end (its <eos>, or
        the next role marker). False elsewhere, and everywhere in a sequence with no role marker."""
        ids = np.asarray(ids, dtype=np.int64)
        roles = np.array([self.special[f'<{r}>'] for r in ROLES])
        at_role = np.isin(ids, roles)
        last = np.maximum.accumulate(np.where(at_role, np.arange(len(ids)), -1)) if len(ids) else ids
        speaking = (last >= 0) & (ids[np.maximum(last, 0)] == self.special['<assistant>']) & ~at_role
        after_eos = np.concatenate([[False], ids[:-1] == self.eos]) if len(ids) else ids.astype(bool)
        # an <eos> closes the turn: anything between it and the next role marker is not the assistant's
        closed = np.maximum.accumulate(np.where(after_eos, np.arange(len(ids)), -1)) > last
        return speaking & ~closed

    def turns(self, ids):
        """Read a chat sequence back: [(role, pieces)] with pieces as split() gives them. Tokens before the first
        role marker form a turn of role None."""
        roles = {self.special[f'<{r}>']: r for r in ROLES}
        out, role, body = [], None, []

        def close():
            if role is not None or body:
                out.append((role, self.split([j for j in body if j != self.eos])[0]))
        for i in (int(x) for x in ids):
            if i in roles:
                close()
                role, body = roles[i], []
            else:
                body.append(i)
        close()
        return out

    def _example(self, prefix, target):
        ids = np.array(prefix + target, dtype=np.int64)
        target_mask = np.zeros(len(ids), dtype=bool)  # True where the token is part of the target span
        target_mask[len(prefix):] = True
        return ids, target_mask

    def tts_prompt(self, text, desc=None):
        return self.tts(text, np.zeros(0, dtype=np.int64), desc)[0][:-1]  # drop the <eos>

    def asr_prompt(self, flat_codes):
        return self.asr(flat_codes, '')[0][:-1]

    # --- reading a generated stream back
    def split(self, ids):
        """Cut ids into [(kind, payload)] with kind in 'text', 'audio', 'desc', 'special'.
        Audio payloads are raw flat codes, whole frames only: a partial trailing frame is dropped
        and reported in the returned warnings, never raised. Returns (pieces, warnings)."""
        pieces, warnings, kind, buf = [], [], 'text', []

        def close():
            nonlocal buf
            if kind == 'audio':
                whole = len(buf) - len(buf) % FRAME_LEN
                if whole < len(buf):
                    warnings.append(f"dropped a partial trailing frame of {len(buf) - whole} audio tokens")
                if whole:
                    try:
                        pieces.append(('audio', self.audio_codes(buf[:whole])))
                    except ValueError as e:
                        warnings.append(f"dropped an audio span: {e}")
            elif buf:
                text_ids = [i for i in buf if i < self.n_text]
                if len(text_ids) < len(buf):
                    warnings.append(f"dropped {len(buf) - len(text_ids)} non-text ids inside a {kind} span")
                pieces.append((kind, self.decode_text(text_ids)))
            buf = []

        for i in (int(x) for x in ids):
            if i == self.audio or i == self.text or i == self.desc:
                close()
                kind = {self.audio: 'audio', self.text: 'text', self.desc: 'desc'}[i]
            elif i == self.eos:
                close()
                break
            elif self.n_text <= i < self.audio_offset:
                close()
                pieces.append(('special', SPECIALS[i - self.n_text]))
            elif not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            else:
                buf.append(i)
        close()
        return pieces, warnings


def token_dtype(vocab_size):
    """uint16 while the vocabulary fits, else uint32."""
    return np.uint16 if vocab_size <= 2 ** 16 else np.uint32


def main(argv):
    opts = apply_overrides(dict(encoding='byte', layout='level', codebook_size=CODEBOOK_SIZE), argv)
    tok = Tokenizer(opts['encoding'], opts['layout'], opts['codebook_size'])
    print(tok.to_dict())
    rng = np.random.default_rng(0)
    levels = [rng.integers(0, tok.codebook_size, r * 2) for r in LEVEL_RATES]
    ids, mask = tok.tts('hello there', flatten(levels), desc='a calm voice')
    print('tts example:', ids.tolist())
    print('target mask:', mask.astype(int).tolist())
    print('split back:', tok.split(ids)[0])


if __name__ == '__main__':
    run(main)
