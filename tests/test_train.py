import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from configurator import apply_overrides
from fixtures import write_synthetic_dataset
from common import model_from_checkpoint
from generate import generate
from tokenfile import load_split
from tokenizer import Tokenizer
import train

TINY = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=128', '--batch_size=4', '--dtype=float32',
        '--compile=False', '--eval_examples=8', '--log_interval=1', '--threads=1', '--warmup_iters=2']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    write_synthetic_dataset(str(root / 'syn'))
    return str(root)


def run(data_root, out_dir, *args):
    cfg = apply_overrides(train.DEFAULTS, [f'--data_root={data_root}', '--dataset=syn', f'--out_dir={out_dir}', *TINY, *args])
    return train.train(cfg)


def test_loss_falls_and_checkpoint_stands_alone(data_root, tmp_path):
    result = run(data_root, tmp_path, '--max_iters=40', '--eval_interval=40', '--learning_rate=3e-3', '--eval_examples=48')
    first, last = sum(result['losses'][:3]) / 3, sum(result['losses'][-3:]) / 3
    assert last < first - 1.0, result['losses']
    assert set(result['val']) == {'loss', 'audio', 'text', 'task_tts', 'task_asr', 'task_text'}
    assert result['val']['audio'] < 8.32  # below the uniform line over 4096 codes
    # sampling code needs nothing but the checkpoint: no config file, no data folder
    ckpt = torch.load(tmp_path / 'ckpt.pt', map_location='cpu', weights_only=False)
    model, tok = model_from_checkpoint(ckpt), Tokenizer.from_dict(ckpt['vocab'])
    prompt = torch.tensor(tok.tts_prompt('red cat'))[None]
    assert generate(model, prompt, 5, temperature=0).shape == (1, len(prompt[0]) + 5)
    assert not any(k.startswith('_orig_mod.') for k in ckpt['model'])
    assert ckpt['step'] == 40 and ckpt['config']['max_iters'] == 40
    assert not os.path.exists(tmp_path / 'ckpt.pt.tmp')


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_resume_continues_bit_identically(data_root, tmp_path, optimizer):
    # wsd without decay keeps the learning rate independent of max_iters, so 4 + 4 steps see the same schedule as 8
    sched = ['--schedule=wsd', '--decay_frac=0.0', '--eval_interval=100', '--ckpt_interval=100', f'--optimizer={optimizer}']
    whole = run(data_root, tmp_path / 'whole', '--max_iters=8', *sched)['losses']
    run(data_root, tmp_path / 'split', '--max_iters=4', *sched)
    rest = run(data_root, tmp_path / 'split', '--max_iters=8', '--resume=True', *sched)['losses']
    assert rest == whole[4:]
    first, second = (torch.load(tmp_path / d / 'ckpt.pt', weights_only=False)['seconds'] for d in ('whole', 'split'))
    assert 0 < first and 0 < second  # the training time, carried across the resume


def test_resume_refuses_another_optimizer(data_root, tmp_path):
    run(data_root, tmp_path, '--max_iters=2')
    with pytest.raises(ValueError, match='trained with --optimizer=adamw, not --optimizer=muon'):
        run(data_root, tmp_path, '--max_iters=4', '--resume=True', '--optimizer=muon')


def test_time_limit_counts_a_resumed_runs_earlier_seconds(data_root, tmp_path):
    run(data_root, tmp_path, '--max_iters=2')
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=False)
    torch.save(dict(ckpt, seconds=1e6), tmp_path / 'ckpt.pt')  # as if it had trained for longer than the limit
    result = run(data_root, tmp_path, '--max_iters=50', '--resume=True', '--time_limit=60', '--schedule_clock=True',
                 '--eval_interval=100')
    assert result['step'] == 3 and 'time limit of 60 s reached at step 3' in (tmp_path / 'log.txt').read_text()


def test_init_from_starts_from_another_runs_weights(data_root, tmp_path):
    run(data_root, tmp_path / 'base', '--max_iters=3')
    base = tmp_path / 'base' / 'ckpt.pt'
    # a learning rate of 0 leaves the weights as they came: the fine-tuned checkpoint holds exactly the base's
    result = run(data_root, tmp_path / 'tuned', '--max_iters=2', f'--init_from={base}', '--learning_rate=0',
                 '--min_lr=0', '--eval_interval=100')
    tuned = torch.load(tmp_path / 'tuned' / 'ckpt.pt', weights_only=False)
    assert result['step'] == 2 and tuned['step'] == 2  # a fresh run: its own steps and schedule
    weights = torch.load(base, weights_only=False)['model']
    assert all(torch.equal(weights[k], v) for k, v in tuned['model'].items())
    lineage = dict(checkpoint=str(base.resolve()), step=3, data=os.path.abspath(os.path.join(data_root, 'syn')),
                   before=None)
    assert tuned['init_from'] == lineage  # what eval.py checks the QA world's held-out facts against
    run(data_root, tmp_path / 'tuned', '--max_iters=3', '--resume=True', f'--init_from={base}', '--eval_interval=100')
    assert torch.load(tmp_path / 'tuned' / 'ckpt.pt', weights_only=False)['init_from'] == lineage  # kept on resume
    with pytest.raises(ValueError, match=r"--init_from=.*model differs.*n_embd"):
        run(data_root, tmp_path / 'wider', f'--init_from={base}', '--n_embd=48')
    other = os.path.join(data_root, 'other_codec')
    write_synthetic_dataset(other)
    meta = json.load(open(os.path.join(other, 'meta.json')))
    json.dump(dict(meta, codec=dict(meta['codec'], source='another codec')), open(os.path.join(other, 'meta.json'), 'w'))
    with pytest.raises(ValueError, match=r"--init_from=.*another codec's codes"):
        run(data_root, tmp_path / 'other', f'--init_from={base}', '--dataset=other_codec')
    with pytest.raises(FileNotFoundError, match=r"--init_from=.*no such checkpoint"):
        run(data_root, tmp_path / 'none', f'--init_from={tmp_path}/missing.pt')


def test_nan_loss_stops_and_keeps_last_checkpoint(data_root, tmp_path):
    run(data_root, tmp_path, '--max_iters=2')
    before = (tmp_path / 'ckpt.pt').read_bytes()
    with pytest.raises(SystemExit):
        run(data_root, tmp_path, '--max_iters=6', '--resume=True', '--learning_rate=1e30', '--grad_clip=0.0',
            '--warmup_iters=0')
    assert 'the loss is nan' in (tmp_path / 'log.txt').read_text() or 'the loss is inf' in (tmp_path / 'log.txt').read_text()
    assert (tmp_path / 'ckpt.pt').read_bytes() == before


def test_window_targets_cover_only_target_spans(data_root):
    tokens, idx, meta = load_split(os.path.join(data_root, 'syn'), 'train')
    tok = Tokenizer.from_dict(meta['vocab'])
    first = 0
    second = next(e for e in range(len(idx)) if idx[e, 2] == 1)  # an ASR example packed after the first one
    x, y = train.window_batch(os.path.join(data_root, 'syn', 'train.bin'), idx, [[first, second, first]], 128, True, 'cpu',
                                tok)
    s, n, task, t = idx[first]
    assert n < 128 and task == 0 and x[0, 0].item() == tok.text  # a TTS example starts the window
    targets = (y[0] != -1).nonzero()[:, 0]
    assert targets[0].item() == t - 1  # the first target is the token after <audio>
    assert (y[0, :t - 1] == -1).all()
    # the second example follows the first directly, and only its target span (the transcript) counts
    s2, n2, _, t2 = idx[second]
    m = min(n2, 128 - n)
    assert (x[0, n:n + m].numpy() == tokens[s2:s2 + m]).all()
    assert (y[0, n - 1:n - 1 + t2] == -1).all() and (y[0, n - 1 + t2:n - 1 + m] != -1).all()


def test_windows_draw_examples_by_task_weight(data_root):
    _, idx, _ = load_split(os.path.join(data_root, 'syn'), 'train')
    cfg = dict(train.DEFAULTS, mix_tts=0.0, mix_asr=1.0, mix_text=0.0)
    windows = train.draw_windows(np.random.default_rng(0), idx, train.task_cdf(idx, cfg), 20, 128)
    assert all(sum(idx[e, 1] for e in w) >= 129 for w in windows)
    drawn = np.concatenate(windows)
    assert (idx[drawn, 2] == 1).all() and len(set(drawn.tolist())) > 5
    with pytest.raises(ValueError, match='mix_'):
        train.task_cdf(idx, dict(cfg, mix_asr=-1.0))
    with pytest.raises(ValueError, match='no example'):
        train.task_cdf(idx[idx[:, 2] == 0], cfg)


def test_ddp_two_processes_match_one(data_root, tmp_path):
    """2 gloo processes with the same global batch give the same losses as one process."""
    common = [f'--data_root={data_root}', '--dataset=syn', *TINY, '--max_iters=3', '--grad_accum=2',
              '--eval_interval=100', '--ckpt_interval=100']

    def losses(out, launcher):
        subprocess.run([*launcher, 'train.py', *common, f'--out_dir={out}'], check=True, capture_output=True,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=240)
        return [float(m) for m in re.findall(r'\| loss ([\d.]+) \|', (out / 'log.txt').read_text())]
    one = losses(tmp_path / 'one', [sys.executable])
    two = losses(tmp_path / 'two', [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2'])
    assert len(one) == len(two) == 3
    assert all(abs(a - b) < 1e-4 for a, b in zip(one, two)), (one, two)
