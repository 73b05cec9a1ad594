"""The tiny espeak-ng corpus: sentences, held-out splits, speakers, synthesis."""
import re

import numpy as np
import pytest

import tinyspeech  # noqa: E402
from tokenizer import SAMPLE_RATE  # noqa: E402


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
    with pytest.raises(ValueError, match='at least 2 speakers'):
        tinyspeech.speakers(voices=['en-us'])
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
