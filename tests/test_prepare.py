"""prepare.py: token files, MLS-schema rows, the tiny corpus and the folder source, end to end on CPU."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import prepare  # noqa: E402
import tokenfile  # noqa: E402
from tokenizer import CODEBOOK_SIZE, FRAME_LEN, TASKS, Tokenizer, flatten, token_dtype  # noqa: E402


def opts(**kw):
    return prepare.resolve_options(dict(prepare.config, encoding='byte', **kw))


def examples(data_dir, split):
    """[(task, ids, target_start)] of a prepared split."""
    tokens, idx, _ = tokenfile.load_split(data_dir, split)
    return [(TASKS[t], np.asarray(tokens[s:s + n], dtype=np.int64), ts) for s, n, t, ts in idx]


def utterances(data_dir):
    with open(os.path.join(data_dir, 'utterances.jsonl')) as f:
        return [json.loads(line) for line in f]


def decoded(tok, data_dir):
    """{(split, example number): tok.split() pieces} and a check that each target starts after its marker."""
    out = {}
    for split in prepare.SPLITS:
        for i, (task, ids, target_start) in enumerate(examples(data_dir, split)):
            marker = tok.audio if task == 'tts' else tok.text
            assert ids[target_start - 1] == marker and ids[-1] == tok.eos
            pieces, warnings = tok.split(ids)
            assert not warnings
            out[split, i] = (task, pieces)
    return out

# -----------------------------------------------------------------------------
# token files

@pytest.mark.parametrize('vocab_size', [12554, 78939])
def test_token_file_round_trip(tmp_path, vocab_size):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, 1000)
    path = str(tmp_path / 'x.bin')
    tokenfile.write_tokens(path, tokens, vocab_size, n_examples=7)
    back = tokenfile.read_tokens(path)
    assert back.dtype == token_dtype(vocab_size) and np.array_equal(back, tokens)
    assert tokenfile.read_header(path)['n_examples'] == 7
    tokenfile.write_tokens(path, np.zeros(0, np.int64), vocab_size)
    assert len(tokenfile.read_tokens(path)) == 0
    with pytest.raises(ValueError, match='outside the vocabulary'):
        tokenfile.write_tokens(path, [vocab_size], vocab_size)


def test_truncated_or_foreign_token_file_gives_a_clear_error(tmp_path):
    path = str(tmp_path / 'x.bin')
    tokenfile.write_tokens(path, np.arange(100), 12554)
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises(ValueError, match='truncated'):
        tokenfile.read_tokens(path)
    np.arange(600, dtype=np.int64).tofile(path)  # a file of the right size for a header, wrong magic
    with pytest.raises(ValueError, match='not a token file'):
        tokenfile.read_tokens(path)
    with open(path, 'wb') as f:
        f.write(b'hello')
    with pytest.raises(ValueError, match='too short'):
        tokenfile.read_tokens(path)
    with pytest.raises(FileNotFoundError, match='meta.json'):
        tokenfile.load_split(str(tmp_path), 'train')

# -----------------------------------------------------------------------------
# MLS-schema rows

def test_parse_snac_codes_conventions():
    frames = np.arange(3 * FRAME_LEN).reshape(3, FRAME_LEN)
    flat = frames.reshape(-1)
    plain = ' '.join(map(str, flat))
    for sep in ('#', str(CODEBOOK_SIZE + 1)):
        styled = ' '.join(f'{sep} ' + ' '.join(map(str, f)) for f in frames) + f' {sep}'
        codes, repaired = prepare.parse_snac_codes(styled)
        assert np.array_equal(codes, flat) and not repaired
    codes, repaired = prepare.parse_snac_codes(plain + ' 1 2')
    assert np.array_equal(codes, flat) and repaired
    for bad, reason in [('1 2 x 4 5 6 7', 'unparseable codes'), ('1 2 3.5 4 5 6 7', 'unparseable codes'),
                        ('1 2 4096 4 5 6 7', 'code out of range'), ('1 2 -1 4 5 6 7', 'code out of range'),
                        ('', 'no codes'), ('1 2 3', 'too short'),
                        ('# 1 2 3 # 1 2 3 4 5 6 7 #', 'malformed frame'),
                        ('1 2 3 4 5 6 4097', 'code out of range')]:
        with pytest.raises(prepare.BadRow) as e:
            prepare.parse_snac_codes(bad)
        assert e.value.reason == reason, bad


def test_mixture_repeats():
    rng = np.random.default_rng(0)
    assert [prepare.repeats(2.0, rng) for _ in range(50)] == [2] * 50
    assert [prepare.repeats(0.0, rng) for _ in range(50)] == [0] * 50
    draws = [prepare.repeats(1.25, rng) for _ in range(4000)]
    assert set(draws) == {1, 2} and 0.2 < np.mean(draws) - 1 < 0.3


def test_split_is_a_stable_hash():
    keys = [f'speaker {i}' for i in range(200)]
    here = [prepare.split_of(k, 0.3) for k in keys]
    assert 30 < here.count('val') < 90
    code = "import prepare; print(''.join(prepare.split_of(f'speaker {i}', 0.3)[0] for i in range(200)))"
    for seed in ('1', '2'):  # str hash() changes with PYTHONHASHSEED; the split must not
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT,
                             env=dict(os.environ, PYTHONHASHSEED=seed), check=True).stdout.strip()
        assert out == ''.join(s[0] for s in here)

# -----------------------------------------------------------------------------
# the stand-in codec on a few synthesized utterances: the codes every test below starts from

@pytest.fixture(scope='module')
def stand_in(tmp_path_factory):
    import codec as codec_lib
    import tinyspeech
    utts = tinyspeech.make_corpus(6, 0, voices=['en-us', 'en'])
    wavs = tinyspeech.synthesize_corpus(utts, progress=False)
    codec = codec_lib.MelCodec.fit(wavs, n_codes=CODEBOOK_SIZE, seed=0)
    path = str(tmp_path_factory.mktemp('codec') / 'codec.npz')
    codec.save(path)
    return dict(codec=codec, path=path, utts=utts, wavs=wavs, flats=[flatten(codec.encode(w)) for w in wavs])


def codes_text(flat):
    return ' '.join(map(str, flat))


def with_separators(flat, sep):
    return ' '.join(f'{sep} ' + ' '.join(map(str, f)) for f in flat.reshape(-1, FRAME_LEN)) + f' {sep}'


def write_fixture_csv(path, stand_in):
    """Rows in the real schema: good ones (plain, '#' and 4097 separators, a partial trailing frame, no
    description) and one bad row per skip reason. Returns {row number: (text, flat codes, desc)} of good rows."""
    f, u = stand_in['flats'], stand_in['utts']
    out_of_range = f[4].copy()
    out_of_range[10] = CODEBOOK_SIZE
    rows = [  # text, snac24khz, text_description, speaker_id
        (u[0]['text'], codes_text(f[0]), u[0]['desc'], 'spk_a'),
        (u[1]['text'], with_separators(f[1], '#'), u[1]['desc'], 'spk_b'),
        (u[2]['text'], with_separators(f[2], CODEBOOK_SIZE + 1), u[2]['desc'], 'spk_c'),
        (u[3]['text'], codes_text(f[3]) + ' 7 7 7', u[3]['desc'], 'spk_a'),  # partial trailing frame: repaired
        (u[4]['text'], codes_text(f[4]), '', 'spk_d'),  # no description: TTS without <desc>
        (u[5]['text'], codes_text(out_of_range), u[5]['desc'], 'spk_e'),
        ('   ', codes_text(f[5]), u[5]['desc'], 'spk_e'),
        (u[5]['text'], codes_text(f[5][:20]) + ' abc ' + codes_text(f[5][20:]), u[5]['desc'], 'spk_e'),
        (u[5]['text'], codes_text(f[5][:FRAME_LEN]), u[5]['desc'], 'spk_e'),  # one frame: 0.09 s
        ('x' * 2000, codes_text(f[5]), u[5]['desc'], 'spk_e'),
    ]
    with open(path, 'w', newline='') as fh:
        w = csv.writer(fh)
        w.writerow(['text', 'snac24khz', 'text_description', 'speaker_id'])
        w.writerows(rows)
        w.writerow([u[5]['text']])  # a short row: no snac24khz at all
    good = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
    return {row: (u[i]['text'], f[i], u[i]['desc'] if row != 5 else None) for row, i in good.items()}


MLS_SKIPS = {'code out of range': 1, 'empty transcript': 1, 'unparseable codes': 1, 'too short': 1,
             'transcript too long': 1, 'missing column': 1}


@pytest.mark.parametrize('layout', ['level', 'position'])
def test_mls_rows_to_bins_and_back(tmp_path, stand_in, layout):
    good = write_fixture_csv(str(tmp_path / 'part_00000.csv'), stand_in)
    o = opts(source='mls', files=str(tmp_path / 'part_*.csv'), out_dir=str(tmp_path / 'data'), name='m', workers=1,
             val_fraction=0.5, tts_desc=1.0, text=1.0, layout=layout)
    meta = prepare.prepare(o)
    data_dir = str(tmp_path / 'data' / 'm')
    assert meta['skipped'] == MLS_SKIPS
    assert meta['repaired'] == {'partial trailing frame': 1}
    assert meta['skipped_examples']['unparseable codes'][0] == dict(
        file='part_00000', row=8, field='snac24khz', detail="token 20 is 'abc'")
    assert meta['codec']['kind'] == 'snac' and not meta['codec']['stand_in']
    assert sum(s['n_utterances'] for s in meta['splits'].values()) == len(good)
    tok = Tokenizer.from_dict(meta['vocab'])
    pieces = decoded(tok, data_dir)
    recs = utterances(data_dir)
    assert sorted(int(r['source'].split(':')[1]) for r in recs) == sorted(good)
    by_speaker = {}
    for r in recs:
        text, flat, desc = good[int(r['source'].split(':')[1])]
        assert r['text'] == text and r.get('desc') == desc and r['n_frames'] * FRAME_LEN == len(flat)
        by_speaker.setdefault(r['speaker'], set()).add(r['split'])
        tasks = {}
        for e in r['examples']:
            task, p = pieces[r['split'], e]
            tasks[task] = p
        assert set(tasks) == {'tts', 'asr', 'text'}  # 1.0 of each
        assert [k for k, _ in tasks['tts']] == (['desc'] if desc else []) + ['text', 'audio']
        assert (dict(tasks['tts']).get('desc'), dict(tasks['tts'])['text']) == (desc, text)
        assert np.array_equal(dict(tasks['tts'])['audio'], flat)
        assert [k for k, _ in tasks['asr']] == ['audio', 'text']
        assert np.array_equal(tasks['asr'][0][1], flat) and tasks['asr'][1][1] == text
        assert tasks['text'] == [('text', text)]
    assert all(len(s) == 1 for s in by_speaker.values())  # a speaker's rows share a split


def test_mls_second_run_does_nothing_and_finished_shards_are_reused(tmp_path, stand_in, capsys):
    for i in range(2):
        write_fixture_csv(str(tmp_path / f'part_{i:05d}.csv'), stand_in)
    o = opts(source='mls', files=str(tmp_path / 'part_*.csv'), out_dir=str(tmp_path / 'data'), name='m',
             workers=2, val_fraction=0.5)
    data_dir = str(tmp_path / 'data' / 'm')
    prepare.prepare(o)
    first = {s: (np.array(tokenfile.load_split(data_dir, s)[0]), tokenfile.load_split(data_dir, s)[1]) for s in prepare.SPLITS}
    stamp = os.path.getmtime(os.path.join(data_dir, 'train.bin'))
    capsys.readouterr()
    meta = prepare.prepare(o)
    assert 'up to date' in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(data_dir, 'train.bin')) == stamp
    assert meta['skipped'] == {k: 2 * v for k, v in MLS_SKIPS.items()}
    # an interrupted run: no meta.json and one shard unfinished -> only that shard is tokenized again
    kept = os.path.join(data_dir, 'parts', 'part_00000', 'train.tokens.npy')
    kept_stamp = os.path.getmtime(kept)
    os.remove(os.path.join(data_dir, 'meta.json'))
    os.remove(os.path.join(data_dir, 'parts', 'part_00001', 'done.json'))
    prepare.prepare(o)
    assert os.path.getmtime(kept) == kept_stamp
    assert os.path.exists(os.path.join(data_dir, 'parts', 'part_00001', 'done.json'))
    for s in prepare.SPLITS:  # and the rebuilt split equals the first one, row for row
        tokens, idx, _ = tokenfile.load_split(data_dir, s)
        assert np.array_equal(tokens, first[s][0]) and np.array_equal(idx, first[s][1])
    # --hours takes the shortest prefix of shards that holds that much audio
    meta = prepare.prepare(dict(o, name='h', hours=0.001))
    assert meta['source_info']['shards'] == ['part_00000']


def test_mls_without_the_hub_says_what_to_do(tmp_path, monkeypatch):
    import huggingface_hub

    def unreachable(*a, **k):
        raise ConnectionError('no route to host')
    monkeypatch.setattr(huggingface_hub.HfApi, 'dataset_info', unreachable)
    with pytest.raises(RuntimeError, match='--files'):
        prepare.prepare(opts(source='mls', out_dir=str(tmp_path), name='m'))

# -----------------------------------------------------------------------------
# sources with audio

def test_tiny_corpus_end_to_end(tmp_path):
    o = opts(source='tiny', n_train=16, n_val=4, voices='en-us,en', codec='mel', out_dir=str(tmp_path), name='t')
    meta = prepare.prepare(o)
    data_dir = str(tmp_path / 't')
    assert meta['codec']['stand_in'] and meta['codec']['kind'] == 'mel' and meta['codec_file'] == 'codec.npz'
    assert os.path.exists(os.path.join(data_dir, 'codec.npz'))
    assert 'espeak-ng' in meta['source_info']['synthesizer']
    assert meta['splits']['train']['n_utterances'] == 16 and meta['splits']['val']['n_utterances'] == 4
    assert meta['splits']['val']['n_speaker_heldout'] == 2 and meta['splits']['train']['n_speaker_heldout'] == 0
    assert meta['skipped'] == {}
    tok = Tokenizer.from_dict(meta['vocab'])
    pieces = decoded(tok, data_dir)
    for r in utterances(data_dir):
        asr = [pieces[r['split'], e][1] for e in r['examples'] if pieces[r['split'], e][0] == 'asr']
        assert len(asr) == 1 and asr[0][1] == ('text', r['text']) and len(asr[0][0][1]) == r['n_frames'] * FRAME_LEN
    div = meta['splits']['train']['code_diversity']
    assert div['frames'] > 0 and all(0 < lv['distinct'] <= CODEBOOK_SIZE for lv in div['levels'])
    import codec as codec_lib
    reloaded = codec_lib.load_codec('mel:' + os.path.join(data_dir, 'codec.npz'))
    assert reloaded.describe()['stand_in']


def test_tiny_corpus_with_a_natural_voice_end_to_end(tmp_path, monkeypatch):
    """A few dozen utterances spoken by hibari through prepare.py; a rebuild takes the audio from synth/."""
    pytest.importorskip('hibari')
    import tinyspeech
    o = opts(source='tiny', n_train=30, n_val=6, voices='hibari', rates='steady,fast', codec='mel', mel_codes=32,
             out_dir=str(tmp_path), name='h')
    meta = prepare.prepare(o)
    data_dir = str(tmp_path / 'h')
    assert meta['vocab']['codebook_size'] == 32 and meta['vocab']['vocab_size'] == 256 + 10 + 3 * 32
    assert meta['source_info']['synthesizer'].startswith('hibari-tts') and meta['source_info']['speakers'] == 2
    assert meta['splits']['train']['n_utterances'] == 30 and meta['splits']['val']['n_utterances'] == 6
    assert meta['skipped'] == {} and len(os.listdir(os.path.join(data_dir, 'synth'))) == 36
    records = utterances(data_dir)
    synth = os.path.join(data_dir, 'synth')
    assert all(os.path.exists(tinyspeech.cache_path(synth, r)) for r in records)  # where eval.py finds the source audio
    assert {r['desc'] for r in records} <= {'a steady, natural female voice with an American accent',
                                            'a fast, natural female voice with an American accent'}
    assert meta['splits']['train']['tasks']['tts']['with_desc'] > 0  # description-conditioned TTS examples
    monkeypatch.setattr(tinyspeech, 'synthesize', lambda *a: pytest.fail("synthesized again: the cache was not used"))
    again = prepare.prepare(dict(o, force=True))
    assert again['splits'] == meta['splits']


def test_a_natural_voice_without_its_package_stops_before_any_work(tmp_path, monkeypatch):
    import tinyspeech
    monkeypatch.setattr(tinyspeech, '_natural', {})
    monkeypatch.setitem(sys.modules, 'hibari', None)
    with pytest.raises(RuntimeError, match='--voices=hibari needs the package hibari-tts: pip install hibari-tts'):
        prepare.prepare(opts(source='tiny', n_train=4, n_val=2, voices='hibari,en-us', codec='mel',
                             out_dir=str(tmp_path), name='x'))
    assert not os.path.exists(tmp_path / 'x' / 'meta.json')


def test_folder_source_pairs_and_manifest(tmp_path, stand_in):
    from codec import write_wav
    folder = tmp_path / 'pairs'
    folder.mkdir()
    u, w = stand_in['utts'], stand_in['wavs']
    for i in range(4):
        write_wav(str(folder / f'u{i}.wav'), w[i])
        (folder / f'u{i}.txt').write_text(u[i]['text'] + '\n')
    write_wav(str(folder / 'no_text.wav'), w[4])
    (folder / 'broken.wav').write_bytes(b'not a wav file at all')
    (folder / 'broken.txt').write_text('words')
    (folder / 'lonely.txt').write_text('a transcript without audio')
    write_wav(str(folder / 'blank.wav'), w[5])
    (folder / 'blank.txt').write_text('  \n')
    meta = prepare.prepare(opts(source='folder', path=str(folder), codec='mel', out_dir=str(tmp_path / 'data'),
                                name='f', val_fraction=0.3))
    assert meta['skipped'] == {'missing transcript': 1, 'unreadable audio': 1, 'missing audio': 1, 'empty transcript': 1}
    assert meta['skipped_examples']['missing transcript'][0]['file'] == 'no_text.wav'
    assert meta['skipped_examples']['unreadable audio'][0]['file'] == 'broken.wav'
    assert meta['codec']['stand_in']
    recs = utterances(str(tmp_path / 'data' / 'f'))
    assert sorted(r['text'] for r in recs) == sorted(x['text'] for x in u[:4])

    # a manifest with descriptions, and a stand-in codec reused from a file
    (folder / 'manifest.jsonl').write_text(''.join(
        json.dumps(dict(audio=f'u{i}.wav', text=u[i]['text'], desc=u[i]['desc'])) + '\n' for i in range(4))
        + json.dumps(dict(audio='u0.wav')) + '\n' + '{not json\n')
    meta = prepare.prepare(opts(source='folder', path=str(folder), codec='mel:' + stand_in['path'],
                                out_dir=str(tmp_path / 'data'), name='fm', tts_desc=1.0, val_fraction=0.0))
    assert meta['skipped'] == {'missing transcript': 1, 'bad manifest row': 1}
    assert meta['splits']['train']['tasks']['tts']['with_desc'] == 4
    data_dir = str(tmp_path / 'data' / 'fm')
    tok = Tokenizer.from_dict(meta['vocab'])
    pieces = decoded(tok, data_dir)
    for r in utterances(data_dir):
        i = int(r['file'][1])
        tts = [p for (s, e), (t, p) in pieces.items() if t == 'tts' and e in r['examples']][0]
        assert tts[0] == ('desc', u[i]['desc']) and tts[1] == ('text', u[i]['text'])
        # the reused codec encodes the file's audio exactly as the fixture's codec did
        assert np.array_equal(tts[2][1], flatten(stand_in['codec'].encode(
            __import__('codec').load_audio(str(folder / f'u{i}.wav')))))
    # a codec with more codes per level than the vocabulary holds is refused, before anything is written
    with pytest.raises(ValueError, match=r"has \d+ codes per level, more than the vocabulary's --mel_codes=2"):
        prepare.prepare(opts(source='folder', path=str(folder), codec='mel:' + stand_in['path'], mel_codes=2,
                             out_dir=str(tmp_path / 'data'), name='small'))
    assert not os.path.exists(tmp_path / 'data' / 'small' / 'meta.json')
    with pytest.raises(ValueError, match='--source=mls holds SNAC codes, 4096 per level'):
        opts(source='mls', mel_codes=256)
