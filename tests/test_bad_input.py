"""Bad input as a new user gives it: each input gets a clear error naming the problem, or is read correctly."""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import common
import configurator
import eval as evaluation
import prepare
import sample
import stream
import train
from configurator import apply_overrides
from fixtures import write_synthetic_dataset
from generate import check_sampling
from tokenfile import load_split
from tokenizer import CODEBOOK_SIZE, FRAME_LEN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ['text', 'snac24khz', 'text_description', 'speaker_id']


def codes(n_frames, seed):
    return ' '.join(map(str, np.random.default_rng(seed).integers(0, CODEBOOK_SIZE, n_frames * FRAME_LEN)))


def write_shard(path, rows, bom=False):
    """An MLS-schema CSV as a spreadsheet writes it: CRLF line ends, quoted fields, optionally a byte-order mark."""
    with open(path, 'w', newline='', encoding='utf-8-sig' if bom else 'utf-8') as f:
        w = csv.writer(f, lineterminator='\r\n', quoting=csv.QUOTE_MINIMAL)
        w.writerow(HEADER)
        w.writerows(rows)


def mls_opts(tmp_path, name, **kw):
    return prepare.resolve_options(dict(prepare.config, source='mls', encoding='byte', files=str(tmp_path / f'{name}.csv'),
                                        out_dir=str(tmp_path / 'data'), name=name, workers=1, **kw))

# -----------------------------------------------------------------------------
# 1. a CSV shard with a byte-order mark


def test_csv_with_a_byte_order_mark_crlf_and_quoted_fields_keeps_every_row(tmp_path):
    rows = [('Hello, world: a comma inside quotes', codes(12, 0), 'a calm, low voice', 'spk_a'),
            ('two lines\nin one transcript', codes(10, 1), 'a "quoted" voice', 'spk_b'),
            ('plain text', codes(8, 2), '', 'spk_c')]
    write_shard(str(tmp_path / 'bom.csv'), rows, bom=True)
    meta = prepare.prepare(mls_opts(tmp_path, 'bom', val_fraction=0.0))
    assert meta['skipped'] == {} and meta['splits']['train']['n_utterances'] == 3
    with open(tmp_path / 'data' / 'bom' / 'utterances.jsonl') as f:
        records = [json.loads(line) for line in f]
    assert [r['text'] for r in records] == [r[0] for r in rows]
    assert [r.get('desc') for r in records] == ['a calm, low voice', 'a "quoted" voice', None]

# -----------------------------------------------------------------------------
# 2. a build that skipped every row, or most rows


def test_a_build_that_skipped_every_row_fails_and_leaves_no_dataset(tmp_path):
    write_shard(str(tmp_path / 'good.csv'), [('fine', codes(12, 0), '', 'a')])
    prepare.prepare(mls_opts(tmp_path, 'good', val_fraction=0.0))
    write_shard(str(tmp_path / 'good.csv'), [('  ', codes(12, k), '', 'a') for k in range(3)] +
                [('short', codes(1, 9), '', 'a')])  # the same dataset name, rebuilt from rows that are all bad
    with pytest.raises(ValueError, match=r"no training utterance: every row was skipped.*3 x 'empty transcript' "
                                         r"\(e\.g\. good row 1 text.*1 x 'too short'"):
        prepare.prepare(mls_opts(tmp_path, 'good', val_fraction=0.0, force=True))
    with pytest.raises(FileNotFoundError, match='not a prepared dataset'):  # train.py would refuse it
        load_split(str(tmp_path / 'data' / 'good'), 'train')


def test_a_build_that_skipped_most_rows_says_so_loudly(tmp_path, capsys):
    write_shard(str(tmp_path / 'most.csv'), [('fine', codes(12, 0), '', 'a')] + [('', codes(12, k), '', 'a') for k in range(3)])
    prepare.prepare(mls_opts(tmp_path, 'most', val_fraction=0.0))
    err = capsys.readouterr().err
    assert "WARNING: 3 of 4 rows (75%) were skipped: 3 x 'empty transcript'" in err

# -----------------------------------------------------------------------------
# 3. sampling settings that the frame grammar cannot survive


@pytest.mark.parametrize('kw, flag', [(dict(temperature=-1.0), 'temperature'), (dict(top_k=0), 'top_k'),
                                      (dict(top_p=0.0), 'top_p'), (dict(top_p=1.5), 'top_p'),
                                      (dict(temperature=float('nan')), 'temperature')])
def test_bad_sampling_settings_are_refused_by_every_sampler(loaded, one_thread, kw, flag):
    model, tok, codec, _ = loaded
    base = dict(temperature=1.0, top_k=None, top_p=None)
    calls = [lambda: sample.tts(model, tok, ['red cat'], **{**base, **kw}),
             lambda: sample.asr(model, tok, [np.zeros(2 * FRAME_LEN, np.int64)], **{**base, **kw}),
             lambda: sample.continue_text(model, tok, ['red'], **{**base, **kw}),
             lambda: sample.generate_raw(model, tok, [[tok.text]], **{**base, **kw}),
             lambda: list(stream.stream(model, tok, codec, 'red cat', **{**base, **kw}))]
    for call in calls:
        with pytest.raises(ValueError, match=f'^{flag}='):
            call()


def test_bad_sampling_flags_are_named_before_any_work(tmp_path):
    missing = str(tmp_path / 'no_such_ckpt.pt')  # checked later: the flag must be refused first
    with pytest.raises(ValueError, match='^--temperature=-1: the temperature must be'):
        sample.main([f'--ckpt={missing}', '--text=hi', '--temperature=-1'])
    with pytest.raises(ValueError, match='^--top_k=0: top_k must be'):
        stream.main([f'--ckpt={missing}', '--text=hi', '--top_k=0'])
    with pytest.raises(ValueError, match='^--top_p=2.0: top_p must be'):
        sample.main([f'--ckpt={missing}', '--mode=asr', '--wav=x.wav', '--top_p=2.0'])
    with pytest.raises(ValueError, match='^--tts_temperature=-0.5'):
        evaluation.main([f'--ckpt={missing}', '--data=nowhere', '--tts_temperature=-0.5'])
    check_sampling(0, 1, 1.0)  # the edges that are fine: greedy, one candidate, the whole distribution

# -----------------------------------------------------------------------------
# 4. MFU from a CPU peak that is a peak


def test_cpu_peak_is_the_best_of_several_matmuls_in_the_training_dtype(monkeypatch):
    seen = []

    def timed(a, b, min_seconds):
        seen.append((a.dtype, torch.get_num_threads()))
        return [2e9, 7e9, 3e9][len(seen) - 1]
    monkeypatch.setattr(common, 'matmul_flops', timed)
    threads = torch.get_num_threads()
    assert common.peak_flops('cpu', torch.bfloat16) == 7e9
    assert seen == [(torch.bfloat16, threads)] * 3


def test_mfu_is_never_printed_above_100_percent(tmp_path, monkeypatch):
    assert common.format_mfu(0.4213) == 'MFU 42.13%' and common.format_mfu(None) == 'MFU -'
    assert common.format_mfu(1.053) == 'MFU - (peak unreliable)'
    write_synthetic_dataset(str(tmp_path / 'syn'))
    monkeypatch.setattr(train, 'peak_flops', lambda device, dtype: 1.0)  # a peak measured far too low
    train.train(apply_overrides(train.DEFAULTS, [f'--data_root={tmp_path}', '--dataset=syn', f'--out_dir={tmp_path / "o"}',
                                                 '--n_layer=1', '--n_head=2', '--n_embd=32', '--block_size=64',
                                                 '--batch_size=2', '--max_iters=2', '--log_interval=1', '--eval_examples=4',
                                                 '--compile=False', '--dtype=float32', '--threads=1']))
    log = (tmp_path / 'o' / 'log.txt').read_text()
    assert log.count('MFU - (peak unreliable)') == 2 and not re.search(r'MFU \d', log)

# -----------------------------------------------------------------------------
# 5. GPU peaks by exact model name


@pytest.mark.parametrize('name, model, bf16', [
    ('NVIDIA H100 80GB HBM3', 'H100', 989e12), ('NVIDIA H100 PCIe', 'H100 PCIe', 756e12),
    ('NVIDIA A100-SXM4-80GB', 'A100', 312e12), ('NVIDIA L40S', 'L40S', 362e12), ('NVIDIA L4', 'L4', 121e12),
    ('NVIDIA GeForce RTX 4090', 'RTX 4090', 165e12), ('NVIDIA A10', 'A10', 125e12),
    ('NVIDIA A10G', None, None), ('NVIDIA RTX A6000', None, None), ('Tesla T4', None, None)])
def test_gpu_peak_matches_the_exact_model(monkeypatch, name, model, bf16):
    assert common.gpu_model(name) == model
    monkeypatch.setattr(torch.cuda, 'get_device_name', lambda device=None: name)
    assert common.peak_flops('cuda', torch.bfloat16) == bf16  # an unknown GPU gets no figure, not a neighbour's

# -----------------------------------------------------------------------------
# 6. command-line mistakes: one line and status 2, a traceback only for bugs


def test_run_prints_one_line_for_the_users_mistakes_and_keeps_tracebacks_for_bugs(capsys):
    def users_mistake(argv):
        apply_overrides(dict(batch_size=8), argv)
    with pytest.raises(SystemExit) as e:
        configurator.run(users_mistake, ['--batchsize=4'])
    assert e.value.code == 2 and capsys.readouterr().err == \
        "error: --batchsize=4: unknown config key 'batchsize' (did you mean ['batch_size']?)\n"

    def bug(argv):
        return np.zeros(3) + np.zeros(4)  # a ValueError raised inside numpy: not the user's doing
    with pytest.raises(ValueError, match='could not be broadcast'):
        configurator.run(bug, [])


SCRIPTS = ['prepare.py', 'train.py', 'sample.py', 'stream.py', 'eval.py', 'sweep.py', 'codec.py', 'tinyspeech.py',
           'tokenizer.py', 'model.py', 'bench.py', 'bench_generate.py', 'bench_data.py', 'qaworld.py']


def test_every_script_answers_a_misspelled_flag_with_one_line():
    env = dict(os.environ, OMP_NUM_THREADS='1')
    procs = {s: subprocess.Popen([sys.executable, s, '--no_such_option=1'], cwd=ROOT, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in SCRIPTS}
    for script, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2, (script, p.returncode, err[-500:])
        assert err.startswith("error: --no_such_option=1: unknown config key 'no_such_option'") and \
            err.count('\n') == 1 and 'Traceback' not in err, (script, err)


def test_a_missing_checkpoint_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, 'sample.py', f'--ckpt={tmp_path / "nope.pt"}', '--text=hi'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith('error: checkpoint') and 'not found' in p.stderr
    assert 'Traceback' not in p.stderr and p.stderr.count('\n') == 1
