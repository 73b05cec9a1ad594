"""TTS and ASR interleaved word by word: the templates, the frames per word, the grammar that forces the words, and
the examples prepare.py builds from word timings."""
import numpy as np
import pytest
import torch

import eval as evaluation
import prepare
import train
from sample import WordGrammar, audio_of, tts
from tokenizer import CODEBOOK_SIZE, FRAME_LEN, FRAME_SAMPLES, TASKS, Tokenizer

pytestmark = pytest.mark.usefixtures('one_thread')
WORDS = ['Anna', 'left', 'the', 'red', 'cup.']


def random_codes(n_frames, seed=0):
    return np.random.default_rng(seed).integers(0, CODEBOOK_SIZE, n_frames * FRAME_LEN)


def test_words_template_reads_back_word_by_word():
    tok = Tokenizer()
    flat, frames = random_codes(9), [2, 1, 1, 3, 2]
    ids, target = tok.tts_words(WORDS, flat, frames, desc='a calm voice')
    pieces, warnings = tok.split(ids)
    assert not warnings
    assert [k for k, _ in pieces] == ['desc'] + ['text', 'audio'] * len(WORDS)
    assert ''.join(x for k, x in pieces if k == 'text') == ' '.join(WORDS)  # the words' text joins to the sentence
    spans = [x for k, x in pieces if k == 'audio']
    assert [len(x) // FRAME_LEN for x in spans] == frames and np.array_equal(np.concatenate(spans), flat)
    first_audio = list(ids).index(tok.audio)
    assert not target[:first_audio + 1].any() and target[first_audio + 1:].all()  # targets: from the first code on
    assert np.array_equal(ids[:first_audio + 1], tok.tts_words_prompt(WORDS, 'a calm voice'))
    with pytest.raises(ValueError, match='do not cover'):
        tok.tts_words(WORDS, flat, [2, 1, 1, 3, 1])
    with pytest.raises(ValueError, match='at least one'):
        tok.tts_words(WORDS, flat, [3, 0, 1, 3, 2])


def test_word_by_word_asr_reads_back_and_learns_only_the_transcript():
    tok = Tokenizer()
    flat, frames = random_codes(9), [2, 1, 1, 3, 2]
    ids, target = tok.asr_words(WORDS, flat, frames)
    pieces, warnings = tok.split(ids)
    assert not warnings and [k for k, _ in pieces] == ['audio', 'text'] * len(WORDS)
    assert ''.join(x for k, x in pieces if k == 'text') == ' '.join(WORDS)
    spans = [x for k, x in pieces if k == 'audio']
    assert [len(x) // FRAME_LEN for x in spans] == frames and np.array_equal(np.concatenate(spans), flat)
    # the loss: every text id, the <text> markers after the first word's and <eos>; no audio, no <audio> marker
    assert tok.decode_text(ids[target & (ids < tok.n_text)]) == ' '.join(WORDS)
    assert not (target & tok.is_audio(ids)).any() and not target[ids == tok.audio].any() and target[-1]
    assert target[ids == tok.text].sum() == len(WORDS) - 1
    first_text = list(ids).index(tok.text) + 1
    assert np.array_equal(train.target_span(tok, TASKS.index('asr'), ids, first_text), target)  # training agrees
    plain, plain_target = tok.asr(flat, ' '.join(WORDS))  # and a whole-utterance example keeps its whole target
    start = int(np.argmax(plain_target))
    assert np.array_equal(train.target_span(tok, TASKS.index('asr'), plain, start), plain_target)
    with pytest.raises(ValueError, match='do not cover'):
        tok.asr_words(WORDS, flat, [2, 1, 1, 3, 1])


@pytest.mark.parametrize('ends, n_frames, frames', [
    ([1.2, 2.1, 2.4, 4.0, 5.0], 5, [1, 1, 1, 1, 1]),        # collisions pushed apart: every word keeps a frame
    ([0.4, 3.0, 3.2, 5.6, 6.0], 9, [1, 2, 1, 2, 3]),        # nearest boundary; the last word takes the tail
    ([0.2, 0.3], 1, None),                                   # fewer frames than words
])
def test_word_frames(ends, n_frames, frames):
    got = prepare.word_frames([e * FRAME_SAMPLES for e in ends], n_frames)
    assert got == frames
    if got:
        assert sum(got) == n_frames and min(got) >= 1


def test_the_word_grammar_forces_every_word_in_order(loaded):
    """Whatever the model would say, the row holds the asked-for words in order, each with whole frames of audio;
    a long word is cut at max_word_frames, and the audio is the codes of all the words' spans."""
    model, tok, _, _ = loaded
    sentences = [WORDS, ['Hi', 'there']]
    codes, info = tts(model, tok, [' '.join(w) for w in sentences], words=True, return_info=True, seed=0,
                      max_seconds=9.0, max_word_seconds=0.2, temperature=1.0)
    for ws, flat, rec in zip(sentences, codes, info):
        pieces, _ = tok.split(list(rec['prompt_ids']) + rec['generated_ids'])
        assert ''.join(x for k, x in pieces if k == 'text') == ' '.join(ws)
        spans = [x for k, x in pieces if k == 'audio']
        assert len(spans) == len(ws) and all(1 <= len(x) // FRAME_LEN <= 2 and len(x) % FRAME_LEN == 0 for x in spans)
        assert np.array_equal(flat, np.concatenate(spans)) and rec['generated_ids'][-1] == tok.eos
        assert np.array_equal(audio_of(tok, rec['generated_ids']), flat)


def test_word_grammar_ends_at_max_frames_and_waits_for_min_frames():
    tok = Tokenizer()
    hook = WordGrammar(tok, [['one', 'two']], min_frames=3, max_frames=4)
    seq = torch.tensor([list(tok.tts_words_prompt(['one']))])
    code = lambda p: int(tok.legal_audio_range(p)[0])

    def push(ids):
        nonlocal seq
        seq = torch.cat([seq, torch.tensor([ids])], 1)
        hook.fold(seq)

    hook.fold(seq)
    assert hook.allowed(0) == [tok.legal_audio_range(0)]  # no word without a frame
    push([code(p) for p in range(FRAME_LEN)])
    assert (tok.text, tok.text + 1) in hook.allowed(0) and (tok.eos, tok.eos + 1) not in hook.allowed(0)
    push([tok.text])
    forced = tok.encode_text(' two') + [tok.audio]
    for i in forced:
        assert hook.allowed(0) == [(i, i + 1)]
        push([i])
    push([code(p) for p in range(FRAME_LEN)])
    assert hook.allowed(0) == [tok.legal_audio_range(0)]  # the last word, 2 frames of min_frames=3: go on
    push([code(p) for p in range(FRAME_LEN)])
    assert hook.allowed(0) == [tok.legal_audio_range(0), (tok.eos, tok.eos + 1)]
    push([code(p) for p in range(FRAME_LEN)])
    assert hook.allowed(0) == [(tok.eos, tok.eos + 1)]  # max_frames


def test_prepare_interleaves_the_examples_of_utterances_with_word_timings():
    tok = Tokenizer()
    opts = dict(prepare.config, tts=1.0, tts_desc=0.0, asr=0.0, text=0.0, tts_words=1.0)
    flat = random_codes(6)
    with_words = prepare.utterance_examples(tok, ' '.join(WORDS), flat, None, opts, np.random.default_rng(0),
                                            frames=[1, 1, 1, 1, 2])
    plain = prepare.utterance_examples(tok, ' '.join(WORDS), flat, None, opts, np.random.default_rng(0))
    (task, ids, mask, _), = with_words
    assert task == 'tts' and [k for k, _ in tok.split(ids)[0]].count('audio') == len(WORDS)
    (_, plain_ids, _, _), = plain
    assert [k for k, _ in tok.split(plain_ids)[0]] == ['text', 'audio']  # no timings: the plain template
    opts = dict(prepare.config, tts=0.0, asr=2.0, text=0.0, asr_words=1.0)  # and ASR, when asked to
    examples = prepare.utterance_examples(tok, ' '.join(WORDS), flat, None, opts, np.random.default_rng(0),
                                          frames=[1, 1, 1, 1, 2])
    assert [(task, [k for k, _ in tok.split(ids)[0]]) for task, ids, _, _ in examples] == \
        [('asr', ['audio', 'text'] * len(WORDS))] * 2


def test_audio_loss_counts_only_the_codes_of_interleaved_examples(loaded):
    """eval's TTS audio loss over word-interleaved examples scores exactly the codes, at their frame positions."""
    model, tok, _, _ = loaded
    flat = random_codes(4)
    ids, target = tok.tts_words(['red', 'cat'], flat, [1, 3])
    plain, plain_target = tok.tts('red cat', flat)
    _, audio = evaluation.loss_measures(model, tok, [(ids, int(np.argmax(target)))], ['tts'], 4, 'cpu')
    _, plain_audio = evaluation.loss_measures(model, tok, [(plain, int(np.argmax(plain_target)))], ['tts'], 4, 'cpu')
    assert audio['n_codes'] == plain_audio['n_codes'] == len(flat)
    assert all(x is not None for x in audio['by_level'])


def test_eval_reads_an_interleaved_example_back_whole():
    tok = Tokenizer()
    flat = random_codes(6)
    ids, _ = tok.tts_words(WORDS, flat, [1, 1, 1, 1, 2], desc='a voice')
    idx = np.array([[0, len(ids), 0, 0]])
    pieces = evaluation.example_pieces(tok, ids, idx, 0)
    assert pieces['text'] == ' '.join(WORDS) and pieces['desc'] == 'a voice' and np.array_equal(pieces['audio'], flat)
