import json

import numpy as np
import pytest

from tokenizer import (CODEBOOK_SIZE, FRAME_LEN, LEVEL_RATES, SPECIALS, Tokenizer, flatten, token_dtype,
                       unflatten)


def random_levels(rng, T):
    return [rng.integers(0, CODEBOOK_SIZE, r * T) for r in LEVEL_RATES]


@pytest.fixture(scope='module', params=['level', 'position'])
def tok(request):
    return Tokenizer('byte', request.param)


def test_flatten_unflatten_round_trip_property():
    rng = np.random.default_rng(0)
    for _ in range(200):
        levels = random_levels(rng, int(rng.integers(0, 40)))
        flat = flatten(levels)
        assert len(flat) == FRAME_LEN * len(levels[0])
        back = unflatten(flat)
        assert all(np.array_equal(a, b) for a, b in zip(levels, back))
        assert np.array_equal(flatten(back), flat)


def test_depth_first_frame_order():
    L0, L1, L2 = np.array([0]), np.array([10, 11]), np.array([20, 21, 22, 23])
    assert flatten([L0, L1, L2]).tolist() == [0, 10, 20, 21, 11, 22, 23]
    frames = flatten([np.array([1, 2]), np.array([3, 4, 5, 6]), np.arange(7, 15)])
    assert frames.tolist() == [1, 3, 7, 8, 4, 9, 10, 2, 5, 11, 12, 6, 13, 14]


@pytest.mark.parametrize('levels, message', [
    ([np.zeros(2, int), np.zeros(3, int), np.zeros(8, int)], 'level lengths must be 1:2:4'),
    ([np.zeros(1, int), np.zeros(2, int), np.zeros(5, int)], 'level lengths must be 1:2:4'),
    ([np.array([4096]), np.zeros(2, int), np.zeros(4, int)], 'code 4096 at index 0 is outside 0..4095'),
    ([np.array([0]), np.array([0, -1]), np.zeros(4, int)], 'level 1: code -1 at index 1'),
    ([np.zeros(1), np.zeros(2), np.zeros(4)], 'must be integers'),
    ([np.zeros(1, int), np.zeros(2, int)], 'expected 3 code levels'),
])
def test_flatten_rejects_malformed(levels, message):
    with pytest.raises(ValueError, match=message):
        flatten(levels)


def test_unflatten_rejects_partial_frame_and_range():
    with pytest.raises(ValueError, match='not a whole number of 7-code frames'):
        unflatten(np.zeros(10, int))
    with pytest.raises(ValueError, match='code 5000 at index 3'):
        unflatten(np.array([0, 0, 0, 5000, 0, 0, 0]))


def test_vocabulary_layouts():
    level, position = Tokenizer('byte', 'level'), Tokenizer('byte', 'position')
    assert level.n_text == 256 and level.audio_offset == 256 + len(SPECIALS)
    assert level.vocab_size == level.audio_offset + 3 * CODEBOOK_SIZE
    assert position.vocab_size == position.audio_offset + 7 * CODEBOOK_SIZE
    # level layout: positions 2, 3, 5, 6 share level 2's range; position layout: all 7 ranges differ
    assert level.legal_audio_range(2) == level.legal_audio_range(6) != level.legal_audio_range(1)
    assert len({position.legal_audio_range(p) for p in range(7)}) == 7
    assert token_dtype(level.vocab_size) == np.uint16 and token_dtype(70000) == np.uint32


def test_smaller_codebook_vocabulary():
    """A stand-in codec with 256 codes per level gets a 1,034-id vocabulary, not 12,554: the output layer shrinks."""
    tok = Tokenizer('byte', 'level', 256)
    assert tok.vocab_size == 256 + len(SPECIALS) + 3 * 256
    assert tok.legal_audio_range(1) == (tok.audio_offset + 256, tok.audio_offset + 512)
    flat = flatten([np.array([255]), np.array([0, 7]), np.arange(4)])
    assert np.array_equal(tok.audio_codes(tok.audio_ids(flat)), flat)
    with pytest.raises(ValueError, match='code 256 at index 0 is outside 0..255'):
        tok.audio_ids(flatten([np.array([256]), np.zeros(2, int), np.zeros(4, int)]))
    assert Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
    assert tok != Tokenizer('byte', 'level')
    with pytest.raises(ValueError, match='codebook_size=5000'):
        Tokenizer('byte', 'level', 5000)


def test_audio_ids_round_trip(tok):
    rng = np.random.default_rng(1)
    flat = flatten(random_levels(rng, 9))
    ids = tok.audio_ids(flat)
    assert tok.is_audio(ids).all()
    assert np.array_equal(tok.audio_codes(ids), flat)


def test_audio_codes_rejects_wrong_position_id(tok):
    ids = tok.audio_ids(np.zeros(7, int))
    ids[1] = ids[0] if tok.layout == 'position' else tok.position_offset[0]  # a level-0 id at a level-1 position
    with pytest.raises(ValueError, match='at index 1 of the audio span is not an audio id for frame position 1'):
        tok.audio_codes(ids)
    with pytest.raises(ValueError, match='at index 0'):
        tok.audio_codes([65])  # a text id inside an audio span


def test_vocab_json_round_trip(tok):
    d = json.loads(json.dumps(tok.to_dict()))
    assert Tokenizer.from_dict(d) == tok
    with pytest.raises(ValueError, match='does not rebuild'):
        Tokenizer.from_dict({**d, 'vocab_size': d['vocab_size'] + 1})


def test_text_round_trip_offline_encoding():
    tok = Tokenizer('byte')
    for s in ['hello there', 'Grüße, 東京! 🎧', '', ' a\nb\t']:
        assert tok.decode_text(tok.encode_text(s)) == s
    with pytest.raises(ValueError, match='not a text id'):
        tok.decode_text([tok.eos])


def test_templates_and_split(tok):
    rng = np.random.default_rng(2)
    flat = flatten(random_levels(rng, 3))
    ids, mask = tok.tts('hi there', flat, desc='a calm voice')
    pieces, warnings = tok.split(ids)
    assert [k for k, _ in pieces] == ['desc', 'text', 'audio'] and not warnings
    assert pieces[0][1] == 'a calm voice' and pieces[1][1] == 'hi there'
    assert np.array_equal(pieces[2][1], flat)
    assert mask.sum() == len(flat) + 1 and mask[-1] and not mask[:-len(flat) - 1].any()  # audio + <eos>

    ids, mask = tok.asr(flat, 'hi there')
    pieces, _ = tok.split(ids)
    assert [k for k, _ in pieces] == ['audio', 'text'] and pieces[1][1] == 'hi there'
    assert mask.sum() == len('hi there') + 1

    ids, mask = tok.plain('just text')
    assert tok.split(ids)[0] == [('text', 'just text')] and mask.sum() == len('just text') + 1
    assert tok.tts_prompt('x')[-1] == tok.audio and tok.asr_prompt(flat)[-1] == tok.text


def test_split_drops_partial_trailing_frame(tok):
    flat = np.arange(14) % CODEBOOK_SIZE
    ids = np.concatenate([tok.tts_prompt('hey'), tok.audio_ids(flat)[:11]])  # a frame and 4 tokens
    pieces, warnings = tok.split(ids)
    assert np.array_equal(pieces[-1][1], flat[:7])
    assert warnings == ['dropped a partial trailing frame of 4 audio tokens']
