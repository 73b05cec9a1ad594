import json
import os
import shlex

import numpy as np
import pytest

import sweep
import train
from configurator import apply_overrides
from fixtures import write_synthetic_dataset

TRUTH = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022's fitted constants


def synthetic_losses(seed=0, noise=0.003):
    """Losses drawn from the law on a 6 x 4 grid of (N, D), with multiplicative noise."""
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(6, 9, 6), np.logspace(8, 11, 4), indexing='ij')
    N, D = N.ravel(), D.ravel()
    return N, D, sweep.law(TRUTH, N, D) * np.exp(rng.normal(0, noise, N.size))


def test_fitter_recovers_known_law():
    N, D, L = synthetic_losses()
    p = sweep.fit_law(N, D, L, starts=8)
    assert abs(p['E'] / TRUTH['E'] - 1) < 0.03
    assert abs(p['alpha'] - TRUTH['alpha']) < 0.02 and abs(p['beta'] - TRUTH['beta']) < 0.02
    assert abs(p['A'] / TRUTH['A'] - 1) < 0.25 and abs(p['B'] / TRUTH['B'] - 1) < 0.25
    # and the fit predicts the law where no run was: 10x beyond the largest N and D
    assert abs(sweep.law(p, 1e10, 1e12) / sweep.law(TRUTH, 1e10, 1e12) - 1) < 0.01


def test_unidentified_constant_is_infinite_not_an_error(monkeypatch):
    """A bootstrap resample with few distinct sizes can send a log-constant to hundreds (seen on the tiny
    sweep): the constant becomes inf and its interval says so, instead of an OverflowError."""
    from types import SimpleNamespace
    N, D, L = synthetic_losses()
    monkeypatch.setattr(sweep, 'minimize',
                        lambda f, x0, **kw: SimpleNamespace(x=np.array([900.0, 1.0, 0.5, 0.3, 0.3]), fun=1.0))
    p = sweep.fit_law(N, D, L, starts=2)
    assert p['A'] == float('inf') and p['B'] == pytest.approx(np.e) and p['alpha'] == 0.3
    ci, thetas = sweep.bootstrap_law(N, D, L, p, n_boot=5)
    assert ci['A'] == (float('inf'), float('inf')) and np.isfinite(ci['E']).all() and len(thetas) == 5


def synthetic_isoflop(seed=0, noise=0.003):
    """An IsoFLOP grid drawn from the law: 4 budgets, 7 sizes each around the law's optimum, D = C / 6N."""
    rng = np.random.default_rng(seed)
    G = (TRUTH['alpha'] * TRUTH['A'] / (TRUTH['beta'] * TRUTH['B'])) ** (1 / (TRUTH['alpha'] + TRUTH['beta']))
    a = TRUTH['beta'] / (TRUTH['alpha'] + TRUTH['beta'])
    rows = []
    for C in (1e18, 1e19, 1e20, 1e21):
        n_opt = G * (C / 6) ** a  # Hoffmann et al. 2022, eq. 4
        for N in n_opt * np.logspace(-1, 1, 7):
            D = C / (6 * N)
            L = float(sweep.law(TRUTH, N, D) * np.exp(rng.normal(0, noise)))
            rows.append(dict(N=N, D=D, C=C, budget=dict(kind='flops', value=C), val=dict(loss=L)))
    return rows, a


def test_both_fits_recover_the_law_from_noisy_isoflop_data():
    rows, a = synthetic_isoflop()
    N, D = (np.array([r[k] for r in rows]) for k in ('N', 'D'))
    L = np.array([r['val']['loss'] for r in rows])
    p = sweep.fit_law(N, D, L, starts=8)  # approach 3
    assert abs(p['E'] / TRUTH['E'] - 1) < 0.05
    assert abs(p['alpha'] - TRUTH['alpha']) < 0.05 and abs(p['beta'] - TRUTH['beta']) < 0.05
    iso = sweep.isoflop_fit(rows, 'loss')  # approach 2: parabolas, then N* ~ C^a, D* ~ C^b
    assert all(b['convex'] and b['inside'] for b in iso['budgets'])
    assert abs(iso['a'] - a) < 0.05 and abs(iso['b'] - (1 - a)) < 0.05
    assert iso['a'] + iso['b'] == pytest.approx(1, abs=1e-6)  # C = 6ND on every curve


def test_prediction_interval_comes_from_the_bootstrap_fits():
    N, D, L = synthetic_losses()
    p = sweep.fit_law(N, D, L, starts=8)
    ci, thetas = sweep.bootstrap_law(N, D, L, p, n_boot=8)
    fit = dict(theta=p['theta'].tolist(), bootstrap_thetas=thetas)
    pred = sweep.predict(fit, 3e9, 3e11)
    lo, hi = pred['interval']
    assert lo <= pred['loss'] <= hi and hi - lo < 0.05 * pred['loss']
    assert abs(pred['loss'] / sweep.law(TRUTH, 3e9, 3e11) - 1) < 0.01


def test_isoflop_parabola_finds_the_minimum():
    rows = []
    for C, n_opt in ((1e15, 2e6), (1e16, 6e6), (1e17, 1.8e7)):  # N* ~ C^0.477
        for N in np.logspace(np.log10(n_opt) - 1, np.log10(n_opt) + 1, 5):
            loss = 3 + 0.1 * (np.log(N) - np.log(n_opt)) ** 2 + 1e15 / C
            rows.append(dict(N=N, D=C / (6 * N), C=C, budget=dict(kind='flops', value=C), val=dict(loss=loss)))
    iso = sweep.isoflop_fit(rows, 'loss')
    assert [b['N_opt'] for b in iso['budgets']] == pytest.approx([2e6, 6e6, 1.8e7], rel=1e-6)
    assert iso['a'] == pytest.approx(np.log(9) / np.log(100), rel=1e-6)
    token_rows = [dict(r, budget=dict(kind='tokens', value=r['D'])) for r in rows]
    assert sweep.isoflop_fit(token_rows, 'loss') is None


def test_override_args_read_back_exactly():
    cfg = dict(train.DEFAULTS, dataset='2024', out_dir='out/a b', wandb_project='None', learning_rate=1e-3 / 3,
               compile=False, max_iters=7)
    assert apply_overrides(train.DEFAULTS, sweep.override_args(cfg)) == cfg


def test_device_slots(monkeypatch):
    import torch
    sc = dict(sweep.SWEEP_DEFAULTS)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,5')
    assert sweep.device_slots(sc, 'auto') == ['2', '5']
    assert sweep.device_slots(dict(sc, parallel=1), 'auto') == ['2']
    assert sweep.device_slots(sc, 'cpu') == [None]


def fake_dataset(data_root, name, train_tokens=None):
    from tokenizer import Tokenizer
    os.makedirs(os.path.join(data_root, name))
    meta = dict(vocab=Tokenizer('byte').to_dict())
    if train_tokens:
        meta['splits'] = dict(train=dict(n_tokens=train_tokens))
    with open(os.path.join(data_root, name, 'meta.json'), 'w') as f:
        json.dump(meta, f)


def test_isoflop_planner_hits_each_budget_within_one_percent(tmp_path):
    sc = apply_overrides(sweep.SWEEP_DEFAULTS, ['config/sweep_tiny.py'])
    fake_dataset(tmp_path, sc['train']['dataset'], train_tokens=10 ** 8)
    runs = sweep.plan(dict(sc, train=dict(sc['train'], data_root=str(tmp_path))))
    assert len(sc['flops']) >= 3 and len(runs) == len(sc['flops']) * len(sc['depths']) and len(sc['depths']) >= 5
    for C in sc['flops']:
        own = [r for r in runs if r['budget']['value'] == C]
        assert len({r['N'] for r in own}) >= 5
        for r in own:
            assert abs(r['C'] / C - 1) < 0.01
            assert r['D'] == r['config']['max_iters'] * r['config']['batch_size'] * r['config']['block_size']
            assert r['C'] == pytest.approx(r['D'] * sweep.model_size(r['config'], 12554)[1])
    # a budget too small to hit within 1 % in whole steps, and a run that would repeat data, are refused
    with pytest.raises(ValueError, match='1 %'):
        sweep.plan(dict(sc, flops=[sc['flops'][0] / 300], train=dict(sc['train'], data_root=str(tmp_path))))
    with pytest.raises(ValueError, match='max_epochs'):
        sweep.plan(dict(sc, max_epochs=0.01, train=dict(sc['train'], data_root=str(tmp_path))))


def test_shipped_configs_plan(tmp_path):
    sc = apply_overrides(sweep.SWEEP_DEFAULTS, ['config/sweep_mls.py'])
    with pytest.raises(ValueError, match='meta.json'):  # FLOP budgets need the vocabulary
        sweep.plan(dict(sc, train=dict(sc['train'], data_root=str(tmp_path))))
    fake_dataset(tmp_path, 'mls_full')
    mls = sweep.plan(dict(sc, train=dict(sc['train'], data_root=str(tmp_path))))
    assert len(mls) == len(sc['depths']) * len(sc['flops'])
    for run in mls:
        cfg = run['config']
        step_flops = cfg['batch_size'] * cfg['block_size'] * cfg['grad_accum'] * run['C'] / run['D']
        assert abs(run['C'] - run['budget']['value']) <= step_flops / 2 + 1
        assert cfg['n_embd'] == 64 * cfg['n_layer'] and cfg['n_head'] == cfg['n_layer']
        assert cfg['learning_rate'] == pytest.approx(6e-4 * (768 / cfg['n_embd']) ** 0.5)


# -----------------------------------------------------------------------------
# a 2-budget x 3-size IsoFLOP sweep of minuscule runs on a synthetic dataset, and its held-out prediction,
# run once for the tests below

def write_config(path, out_root, data_root):
    path.write_text(f'''"""3 depths x 2 FLOP budgets of 60-300 steps each, then one held-out run at 2x."""
name = 'test'
out_root = {str(out_root)!r}
depths = [2, 3, 4]
width_per_layer = 16
head_dim = 8
lr_ref = 3e-3
lr_ref_width = 16
flops = [1e11, 2e11]
heldout_factor = 2
bootstrap = 4
train = {{'data_root': {str(data_root)!r}, 'dataset': 'syn', 'block_size': 128, 'batch_size': 2, 'dtype': 'float32',
         'compile': False, 'eval_examples': 8, 'threads': 1, 'log_interval': 10}}
parallel = 2  # two CPU runs at once, one thread each: exercises the multi-device scheduling too
''')
    return str(path)


@pytest.fixture(scope='module')
def swept(tmp_path_factory):
    """Runs the sweep after leaving one run 'crashed': a checkpoint at step 2 and no result.json."""
    root = tmp_path_factory.mktemp('sweep')
    write_synthetic_dataset(str(root / 'data' / 'syn'))
    config = write_config(root / 'sweep_test.py', root / 'out', root / 'data')
    sc = apply_overrides(sweep.SWEEP_DEFAULTS, [config])
    runs = sweep.plan(sc)
    crashed = next(r for r in runs if r['depth'] == 2 and r['budget']['value'] == 1e11)
    train.train(dict(crashed['config'], max_iters=2, eval_interval=2))
    os.remove(os.path.join(crashed['config']['out_dir'], 'result.json'))
    assert sweep.main([config]) == 0
    return dict(root=root, config=config, sc=sc, runs=runs, crashed=crashed,
                sweep_dir=os.path.join(root, 'out', 'sweep_test'),
                results=os.path.join(root, 'out', 'sweep_test', 'results.jsonl'))


def test_sweep_writes_one_row_per_run(swept):
    rows = sweep.load_results(swept['results'])
    assert sorted(r['hash'] for r in rows) == sorted(r['hash'] for r in swept['runs'])
    for row, run in zip(sorted(rows, key=lambda r: r['hash']), sorted(swept['runs'], key=lambda r: r['hash'])):
        assert row['N'] == run['N'] and row['D'] == run['D'] == run['config']['max_iters'] * 2 * 128
        assert row['C'] == row['D'] * row['flops_per_token'] == run['C']
        assert set(row['val']) == {'loss', 'text', 'audio', 'task_tts', 'task_asr', 'task_text'}
        assert row['steps'] == run['config']['max_iters'] and row['wall_time'] > 0
    assert {r['N'] for r in rows} == {sweep.model_size(r['config'], None)[0] for r in swept['runs']}


def test_crashed_run_resumes_and_counts_once(swept):
    steps = swept['crashed']['config']['max_iters']
    rows = [r for r in sweep.load_results(swept['results']) if r['hash'] == swept['crashed']['hash']]
    assert len(rows) == 1 and rows[0]['steps'] == steps and rows[0]['attempts'] == 2
    log = open(os.path.join(swept['crashed']['config']['out_dir'], 'log.txt')).read()
    assert 'resumed from' in log and f'step 10/{steps}' in log and f'step 1/{steps}' not in log


def test_second_invocation_runs_nothing(swept, capsys):
    before = {r['name']: os.path.getmtime(os.path.join(r['config']['out_dir'], 'log.txt')) for r in swept['runs']}
    prediction = os.path.join(swept['sweep_dir'], 'prediction.json')
    written = os.path.getmtime(prediction)
    assert sweep.main([swept['config']]) == 0
    assert '0 to run' in capsys.readouterr().out
    assert len(sweep.load_results(swept['results'])) == 6
    assert before == {r['name']: os.path.getmtime(os.path.join(r['config']['out_dir'], 'log.txt')) for r in swept['runs']}
    assert os.path.getmtime(prediction) == written  # the prediction is never rewritten after its run
    assert sweep.main([swept['config'], '--print_commands=True']) == 0
    assert capsys.readouterr().out == ''


def test_record_collects_finished_runs(swept, tmp_path):
    rows = sweep.load_results(swept['results'])
    moved = tmp_path / 'results.jsonl'
    os.replace(swept['results'], moved)
    try:
        assert sweep.main([swept['config'], '--record=True']) == 0
        again = sweep.load_results(swept['results'])
        key = lambda r: r['hash']
        assert sorted(again, key=key) == sorted(rows, key=key)
    finally:
        os.replace(moved, swept['results'])


def test_print_commands_are_valid_train_invocations(swept, tmp_path, capsys):
    config = write_config(tmp_path / 'sweep_fresh.py', tmp_path / 'out', swept['root'] / 'data')
    assert sweep.main([config, '--print_commands=True']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    runs = sweep.plan(apply_overrides(sweep.SWEEP_DEFAULTS, [config]))
    assert len(lines) == len(runs) == 6
    for line, run in zip(lines, runs):
        argv = shlex.split(line)
        assert argv[:2] == ['python', 'train.py']
        assert apply_overrides(train.DEFAULTS, argv[2:]) == dict(run['config'], resume=True)
    assert not os.path.exists(tmp_path / 'out')  # printing runs nothing


def test_fit_command_writes_report_and_plots(swept):
    report = sweep.main(['fit', swept['results'], '--bootstrap=2', '--starts=2'])
    out = os.path.dirname(swept['results'])
    assert set(report['fits']) == {'loss', 'text', 'audio'}
    assert set(report['isoflop']) == {'loss', 'text', 'audio'}
    assert [b['runs'] for b in report['isoflop']['loss']['budgets']] == [3, 3]
    assert len(report['extrapolation']['loss']) == 1  # the largest-compute run, predicted from the other five
    assert json.load(open(os.path.join(out, 'fit.json')))['n_runs'] == 6
    text = open(os.path.join(out, 'fit.txt')).read()
    assert 'extrapolation check' in text and 'tokens per parameter' in text and 'held-out run' in text
    for png in ('loss_vs_compute.png', 'isoflop.png'):
        assert os.path.getsize(os.path.join(out, png)) > 10000


def test_heldout_run_is_predicted_before_it_runs_and_never_fitted(swept):
    pred = json.load(open(os.path.join(swept['sweep_dir'], 'prediction.json')))
    assert pred['C'] == pytest.approx(2 * 2e11, rel=0.01) and pred['fitted_runs'] == 6
    run_dir = os.path.join(swept['sweep_dir'], pred['run'])
    assert os.path.getmtime(os.path.join(swept['sweep_dir'], 'prediction.json')) < os.path.getmtime(
        os.path.join(run_dir, 'ckpt.pt'))
    assert pred['hash'] not in {r['hash'] for r in sweep.load_results(swept['results'])}
    heldout = json.load(open(os.path.join(swept['sweep_dir'], 'heldout.json')))
    assert heldout['measured']['hash'] == pred['hash'] and heldout['measured']['C'] == pytest.approx(pred['C'])
    for key in ('loss', 'text', 'audio'):
        p = heldout['prediction']['predicted'][key]
        assert np.isfinite(p['loss']) and p['interval'][0] <= p['interval'][1]
