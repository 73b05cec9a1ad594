"""
Scaling-law sweeps: a grid of model sizes (one dial, depth) x budgets, each a plain train.py run; one row per
finished run in results.jsonl; Chinchilla fits of L(N, D) for the overall, text and audio losses.

    python sweep.py config/sweep_tiny.py                          # run what is missing, then fit and plot
    python sweep.py config/sweep_tiny.py --dry_run=True           # the plan and each run's state; trains nothing
    python sweep.py config/sweep_tiny.py --depths=[1,2] --tokens=[20000,40000] --name=tiny_check   # a small check
    python sweep.py config/sweep_mls.py --print_commands=True > runs.txt   # one train.py command line per pending run
    sbatch --array=1-$(wc -l < runs.txt) --wrap 'eval "$(sed -n ${SLURM_ARRAY_TASK_ID}p runs.txt)"'
    python sweep.py config/sweep_mls.py --record=True             # collect finished runs' result.json into results.jsonl
    python sweep.py fit out/sweep_tiny/results.jsonl              # refit and replot from the results alone

Conventions (they match model.py):
- N is the non-embedding parameter count, model.num_params(): the token embedding and the output layer are left out.
- D is the number of tokens the run trained on (steps x batch x block x accumulation): every window token, although
  the loss is taken on target spans only (train.py --target_only_loss).
- C = D * model.flops_per_token(): 6 x (N + output layer) + attention, forward and backward; the output layer is
  included because over a joint text + audio vocabulary it dominates the FLOPs of small models.

Each run lives in out/sweep_<name>/<run>/ (its ckpt.pt, log.txt, eval.jsonl and, once finished, result.json). The run
folder carries a hash of the run's resolved train.py config, so editing the sweep config starts new runs instead of
mixing old ones in. A run without result.json is (re)started with --resume=True: a crashed run continues from its last
checkpoint and is counted once, when it finishes.

The held-out prediction (heldout_factor > 0, FLOP budgets): once every run is in, the fit picks the compute-optimal
depth at heldout_factor x the largest budget and writes the predicted losses to prediction.json; only then does that
run start. Its row goes to heldout.jsonl, never into results.jsonl, and heldout.json sets prediction beside
measurement. A later invocation reuses prediction.json as it is (delete it to predict anew).
"""
import hashlib
import itertools
import json
import math
import os
import shlex
import subprocess
import sys
import time

import numpy as np
import torch
from scipy.optimize import minimize
from tqdm import tqdm

import configurator
import train
from configurator import REPO, apply_overrides, parse_value
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------
# default sweep config (config/sweep_*.py override these; see config/sweep_tiny.py)
SWEEP_DEFAULTS = dict(
    name='default',             # results land in <out_root>/sweep_<name>/
    out_root='out',
    # the one size dial: n_layer = depth; width and heads follow from it
    depths=[1, 2, 3],
    width_per_layer=64,         # n_embd = 64 * depth: nanochat's aspect ratio (karpathy/nanochat, base_train.py)
    head_dim=64,                # n_head = n_embd // head_dim
    # learning rate from width: lr = lr_ref * (lr_ref_width / n_embd) ** lr_exponent. 0.5 is nanochat's AdamW rule
    # (gpt.py: lr * (model_dim / 768) ** -0.5); 1.0 is muP's hidden-layer Adam rule (Yang et al. 2022, Tensor
    # Programs V), which assumes muP's initialisation that model.py does not use.
    lr_ref=2e-3,
    lr_ref_width=256,
    lr_exponent=0.5,
    min_lr_frac=0.1,            # min_lr = learning_rate * min_lr_frac
    warmup_frac=0.05,           # warmup_iters = warmup_frac * max_iters: runs differ in length by 10x or more
    # budgets: token budgets, or FLOP budgets (an IsoFLOP grid: tokens = C / model.flops_per_token())
    tokens=[],
    flops=[],
    train={},                   # train.py overrides shared by all runs (dataset, block_size, batch_size, dtype, ...)
    # what to do
    dry_run=False,              # print the plan and each run's state
    print_commands=False,       # print one train.py command line per pending run, run nothing
    record=False,               # collect finished runs' result.json into results.jsonl, run nothing
    parallel=0,                 # runs at once: 0 = one per visible GPU (CUDA_VISIBLE_DEVICES), one on CPU
    fit=True,                   # fit and plot once the runs are done
    bootstrap=100,              # bootstrap resamples for the fit's intervals (0 = none)
    holdout=0,                  # extrapolation check: leave out this many largest-compute runs (0 = 10 %, at least 1)
    heldout_factor=0,           # the held-out prediction: after the fit, one run at this many times the largest FLOP
                                # budget at the fitted compute-optimal depth, its loss predicted before it starts
    max_epochs=1.0,             # refuse runs that would read the training split more often than this
)

# train.py keys that change where or how a run reports, not what it trains: left out of the run's hash
UNHASHED = ('out_dir', 'resume', 'log_interval', 'ckpt_interval', 'wandb_log', 'wandb_project', 'threads', 'device')
LOSS_KEYS = ('loss', 'text', 'audio')

# -----------------------------------------------------------------------------
# the plan: one train.py config per (depth, budget)

def override_args(cfg):
    """{key: value} -> ['--key=value', ...] that configurator.apply_overrides reads back to the same values."""
    args = []
    for k, v in cfg.items():
        text = str(v)
        if parse_value(text) != v or type(parse_value(text)) is not type(v):
            text = repr(v)  # e.g. a string that would read back as a number
        args.append(f'--{k}={text}')
    return args


def config_hash(cfg):
    kept = {k: v for k, v in sorted(cfg.items()) if k not in UNHASHED}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:10]


def short(x):
    """250000 -> '250k', 1.5e6 -> '1.5M' (run names)."""
    for div, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if x >= div:
            return f'{x / div:.3g}{suffix}'
    return f'{x:.3g}'


def dataset_meta(base):
    """The dataset's meta.json, or None when the data is not there (yet)."""
    path = os.path.join(base['data_root'], base['dataset'], 'meta.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def vocab_size_of(base):
    meta = dataset_meta(base)
    return None if meta is None else meta['vocab']['vocab_size']


def model_size(cfg, vocab_size):
    """(non-embedding params N, training FLOPs per token) from model.py itself, on the meta device (no memory)."""
    with torch.device('meta'):
        model = GPT(GPTConfig(vocab_size=vocab_size or 64, block_size=cfg['block_size'], n_layer=cfg['n_layer'],
                              n_head=cfg['n_head'], n_embd=cfg['n_embd'], tie_weights=cfg['tie_weights']))
    return model.num_params(), model.flops_per_token() if vocab_size else None


def run_config(sc, base, depth):
    """The train.py config of one size on the dial: n_layer = depth, width and learning rate from the depth."""
    n_embd = sc['width_per_layer'] * depth
    if n_embd % sc['head_dim']:
        raise ValueError(f"depth {depth}: width {n_embd} is not a multiple of head_dim {sc['head_dim']}")
    lr = sc['lr_ref'] * (sc['lr_ref_width'] / n_embd) ** sc['lr_exponent']
    return dict(base, n_layer=depth, n_embd=n_embd, n_head=n_embd // sc['head_dim'], learning_rate=lr,
                min_lr=lr * sc['min_lr_frac'])


def plan(sc):
    """The sweep config -> one dict per run: name, out_dir, hash, the resolved train.py config, N, planned D and C.
    An IsoFLOP grid (flops=[...]) gives each size D = C / flops_per_token tokens, rounded to whole steps; a budget
    missed by more than 1 % (too few steps) or a run that would repeat data (max_epochs) is refused."""
    if bool(sc['tokens']) == bool(sc['flops']):
        raise ValueError("a sweep config sets exactly one of tokens=[...] (token budgets) or flops=[...] (FLOP budgets)")
    if not sc['depths']:
        raise ValueError("depths=[...] is empty")
    base = apply_overrides(train.DEFAULTS, override_args(sc['train']))
    meta = dataset_meta(base)
    vocab = None if meta is None else meta['vocab']['vocab_size']
    if sc['flops'] and vocab is None:
        raise ValueError(f"FLOP budgets need the vocabulary size from {base['data_root']}/{base['dataset']}/meta.json; "
                         f"prepare the dataset first (python prepare.py ...)")
    train_tokens = (meta or {}).get('splits', {}).get('train', {}).get('n_tokens')
    tokens_per_step = base['batch_size'] * base['block_size'] * base['grad_accum']
    sweep_dir = os.path.join(sc['out_root'], f"sweep_{sc['name']}")
    kind, budgets = ('tokens', sc['tokens']) if sc['tokens'] else ('flops', sc['flops'])
    runs = []
    for depth, budget in itertools.product(sc['depths'], budgets):
        cfg = run_config(sc, base, depth)
        n_params, fpt = model_size(cfg, vocab)
        tokens = budget if kind == 'tokens' else budget / fpt
        steps = round(tokens / tokens_per_step)
        where = f"depth {depth}, {kind} {budget:g}"
        if steps < 1:
            raise ValueError(f"{where}: {tokens:,.0f} tokens is less than one step of {tokens_per_step:,} tokens")
        if kind == 'flops' and abs(steps * tokens_per_step * fpt / budget - 1) > 0.01:
            raise ValueError(f"{where}: {steps} steps of {tokens_per_step:,} tokens miss the budget by more than 1 %; "
                             f"use a smaller batch or a larger budget")
        if train_tokens and steps * tokens_per_step > sc['max_epochs'] * train_tokens:
            raise ValueError(f"{where}: {steps * tokens_per_step:,} tokens would read the training split of "
                             f"{base['dataset']} ({train_tokens:,} tokens) more than max_epochs={sc['max_epochs']:g} "
                             f"times; prepare a bigger corpus (prepare.py --n_train=...) or lower the budget")
        cfg.update(max_iters=steps, warmup_iters=round(sc['warmup_frac'] * steps),
                   eval_interval=steps)  # one evaluation, at the end: the fits use the final loss only
        h = config_hash(cfg)
        name = f"d{depth}_{'D' + short(budget) if kind == 'tokens' else 'C' + f'{budget:.3g}'.replace('+', '')}_{h}"
        cfg['out_dir'] = os.path.join(sweep_dir, name)
        runs.append(dict(name=name, hash=h, depth=depth, budget=dict(kind=kind, value=budget), config=cfg, N=n_params,
                         D=steps * tokens_per_step, C=None if fpt is None else steps * tokens_per_step * fpt))
    return runs


def train_command(run, python='python'):
    """The train.py command line of a run: the values that differ from train.DEFAULTS. Always --resume=True,
    so a re-queued or crashed run continues from its checkpoint (a fresh one starts from scratch)."""
    cfg = dict(run['config'], resume=True)
    return [python, 'train.py', *override_args({k: v for k, v in cfg.items() if v != train.DEFAULTS[k]})]

# -----------------------------------------------------------------------------
# results.jsonl: one row per finished run, rewritten atomically so a crash never leaves half a row

def load_results(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{i}: not a JSON row ({e})") from None
    return rows


def save_results(path, rows):
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    os.replace(path + '.tmp', path)


def result_row(run):
    """A finished run's row from its result.json, or None while the run has not finished."""
    out = run['config']['out_dir']
    path = os.path.join(out, 'result.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    val = result['val']
    if val is None:  # resumed after its final checkpoint: the final evaluation is already in eval.jsonl
        evals = []
        if os.path.exists(os.path.join(out, 'eval.jsonl')):
            with open(os.path.join(out, 'eval.jsonl')) as f:
                evals = [json.loads(line) for line in f]
        val = next((e['val'] for e in evals[::-1] if e['step'] == result['step']), None)
        if val is None:
            raise ValueError(f"{path}: no final validation loss (and none in eval.jsonl for step {result['step']})")
    with open(os.path.join(out, 'log.txt')) as f:
        attempts = sum(line.startswith('config: ') for line in f)
    cfg = run['config']
    return dict(run=run['name'], hash=run['hash'], depth=run['depth'], n_layer=cfg['n_layer'], n_embd=cfg['n_embd'],
                n_head=cfg['n_head'], learning_rate=cfg['learning_rate'], budget=run['budget'],
                N=result['n_params'], D=result['tokens_seen'], C=result['tokens_seen'] * result['flops_per_token'],
                flops_per_token=result['flops_per_token'], steps=result['step'], val=val,
                best_val_loss=result['best_val_loss'], wall_time=result['wall_time'],
                tokens_per_second=result['tokens_per_second'], attempts=attempts, config=cfg)


def record_finished(runs, results_path):
    """Add a row for every finished run that has none. Returns the number of rows added."""
    rows = load_results(results_path)
    have = {r['hash'] for r in rows}
    new = [row for row in (result_row(r) for r in runs if r['hash'] not in have) if row is not None]
    if new:
        save_results(results_path, rows + new)
    return len(new)


def run_state(run, done):
    if run['hash'] in done:
        return 'done'
    out = run['config']['out_dir']
    if os.path.exists(os.path.join(out, 'result.json')):
        return 'finished, not recorded'
    return 'has a checkpoint' if os.path.exists(os.path.join(out, 'ckpt.pt')) else 'pending'

# -----------------------------------------------------------------------------
# local execution: one run per visible GPU, or one at a time on CPU

def device_slots(sc, base_device):
    """CUDA_VISIBLE_DEVICES values for concurrent runs; [None] means one run at a time, environment untouched."""
    if base_device not in ('auto', 'cuda') or not torch.cuda.is_available():
        return [None] * max(sc['parallel'], 1)
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    ids = visible.split(',') if visible else [str(i) for i in range(torch.cuda.device_count())]
    return ids[:sc['parallel']] if sc['parallel'] else ids


def run_progress(run):
    """(steps done, eta text) of a running run, from the last step line of its log.txt."""
    path = os.path.join(run['config']['out_dir'], 'log.txt')
    if not os.path.exists(path):
        return 0, ''
    with open(path, 'rb') as f:
        f.seek(max(os.path.getsize(path) - 4096, 0))
        lines = f.read().decode(errors='replace').splitlines()
    for line in reversed(lines):
        if line.startswith('step ') and '|' in line:
            step = int(line.split()[1].split('/')[0])
            eta = line.rsplit('eta ', 1)[-1] if 'eta ' in line else ''
            return step, eta
    return 0, ''


def execute(runs, sc, results_path):
    """Run the runs (subprocesses of train.py), recording each as it finishes. Returns the failed runs."""
    slots = device_slots(sc, runs[0]['config']['device'])
    total = sum(r['C'] or r['D'] for r in runs)  # progress in FLOPs (tokens when the vocabulary is unknown)
    bar = tqdm(total=total, unit='FLOP' if runs[0]['C'] else 'tok', unit_scale=True, dynamic_ncols=True, mininterval=5)
    if len(slots) > 1:  # the longest runs first, so no device idles at the end waiting for one long run
        runs = sorted(runs, key=lambda r: -(r['C'] or r['D']))
    queue, running, failed, finished_work = list(enumerate(runs, 1)), {}, [], 0.0
    try:
        while queue or running:
            for slot in [s for s in range(len(slots)) if s not in running][:len(queue)]:
                i, run = queue.pop(0)
                os.makedirs(run['config']['out_dir'], exist_ok=True)
                env = dict(os.environ)
                if slots[slot] is not None:
                    env['CUDA_VISIBLE_DEVICES'] = slots[slot]
                out = open(os.path.join(run['config']['out_dir'], 'stdout.txt'), 'a')
                proc = subprocess.Popen(train_command(run, sys.executable), cwd=REPO, env=env, stdout=out,
                                        stderr=subprocess.STDOUT)
                running[slot] = (i, run, proc, out, time.time())
                where = '' if slots[slot] is None else f' on GPU {slots[slot]}'
                tqdm.write(f"[{i}/{len(runs)}] start {run['name']}{where}: N {run['N'] / 1e6:.2f} M, "
                           f"D {run['D'] / 1e6:.2f} M tokens, {run['config']['max_iters']} steps, "
                           f"lr {run['config']['learning_rate']:.2e}")
            time.sleep(1.0)
            partial = 0.0
            for slot, (i, run, proc, out, t0) in list(running.items()):
                work = run['C'] or run['D']
                if proc.poll() is None:
                    step, eta = run_progress(run)
                    partial += work * step / run['config']['max_iters']
                    if len(running) == 1:
                        bar.set_description(f"[{i}/{len(runs)}] {run['name']} step {step}/{run['config']['max_iters']}"
                                            + (f" eta {eta}" if eta else ''), refresh=False)
                    continue
                out.close()
                del running[slot]
                finished_work += work
                try:
                    added = record_finished([run], results_path) if proc.returncode == 0 else 0
                except ValueError as e:
                    tqdm.write(str(e))
                    added = 0
                if added:
                    row = next(r for r in load_results(results_path) if r['hash'] == run['hash'])
                    tqdm.write(f"[{i}/{len(runs)}] done {run['name']} in {(time.time() - t0) / 60:.1f} min: "
                               f"val loss {row['val']['loss']:.3f}, text {row['val'].get('text', float('nan')):.3f}, "
                               f"audio {row['val'].get('audio', float('nan')):.3f}")
                else:
                    failed.append(run)
                    tail = open(os.path.join(run['config']['out_dir'], 'stdout.txt')).read()[-2000:]
                    tqdm.write(f"[{i}/{len(runs)}] FAILED {run['name']} (exit code {proc.returncode}); the end of "
                               f"{run['config']['out_dir']}/stdout.txt:\n{tail}")
            bar.update(min(finished_work + partial, total) - bar.n)  # tqdm redraws at most every mininterval
    except KeyboardInterrupt:
        for i, run, proc, out, t0 in running.values():
            proc.terminate()  # the run keeps its last checkpoint; the next invocation resumes it
            proc.wait()
        raise
    finally:
        bar.close()
    return failed


def run_sweep(sc):
    runs = plan(sc)
    sweep_dir = os.path.join(sc['out_root'], f"sweep_{sc['name']}")
    results_path = os.path.join(sweep_dir, 'results.jsonl')
    if sc['print_commands']:  # pending runs: no row and no result.json (--record collects finished ones)
        done = {r['hash'] for r in load_results(results_path)}
        for run in runs:
            if run_state(run, done) not in ('done', 'finished, not recorded'):
                print(' '.join(shlex.quote(a) for a in train_command(run)))
        return 0
    # runs that finished elsewhere, or before the sweep itself was stopped (a dry run writes nothing)
    added = 0 if sc['dry_run'] else record_finished(runs, results_path)
    done = {r['hash'] for r in load_results(results_path)}
    if sc['record'] or sc['dry_run']:
        states = [run_state(r, done) for r in runs]
        if sc['dry_run']:
            print(f"{'run':<28} {'N':>9} {'D':>9} {'C':>9} {'steps':>6} {'lr':>8}  state")
            for r, s in zip(runs, states):
                c = f"{r['C']:.2e}" if r['C'] else '?'
                print(f"{r['name']:<28} {r['N'] / 1e6:8.2f}M {r['D'] / 1e6:8.2f}M {c:>9} {r['config']['max_iters']:>6} "
                      f"{r['config']['learning_rate']:8.2e}  {s}")
        print(f"{results_path}: {added} rows added; {states.count('done')} of {len(runs)} runs done, "
              f"{len(runs) - states.count('done')} to go")
        return 0
    todo = [r for r in runs if r['hash'] not in done]
    print(f"sweep {sc['name']}: {len(runs)} runs, {len(runs) - len(todo)} already in {results_path}"
          + (f" ({added} just recorded)" if added else '') + f", {len(todo)} to run")
    t0 = time.time()
    failed = execute(todo, sc, results_path) if todo else []
    if todo:
        print(f"sweep {sc['name']}: ran {len(todo) - len(failed)} of {len(todo)} runs in {(time.time() - t0) / 60:.1f} min")
    if failed:
        print(f"{len(failed)} runs failed: {', '.join(r['name'] for r in failed)}; run the same command again to "
              f"resume them from their checkpoints")
    rows = [r for r in load_results(results_path) if r['hash'] in {run['hash'] for run in runs}]
    if sc['fit'] and len(rows) >= 2:
        report = fit_results(rows, sweep_dir, bootstrap=sc['bootstrap'], holdout=sc['holdout'])
        if sc['heldout_factor'] and len(rows) == len(runs):
            return run_heldout(sc, rows, report, sweep_dir)
    return 1 if failed else 0

# -----------------------------------------------------------------------------
# fitting L(N, D) = E + A / N^alpha + B / D^beta, Hoffmann et al. 2022 (Chinchilla) approach 3:
# minimise the Huber loss (delta 1e-3) of log L_pred - log L over (a, b, e, alpha, beta) with E = exp(e),
# A = exp(a), B = exp(b) and log L_pred = logsumexp(a - alpha log N, b - beta log D, e).

HUBER_DELTA = 1e-3
# Hoffmann et al.'s grid of initial values: 6 x 6 x 5 x 5 x 5 = 4,500 points
INIT_GRID = np.array(list(itertools.product(np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
                                            np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))), dtype=float)


def law(p, N, D):
    """The fitted law at (N, D); p holds E, A, B, alpha, beta, and from fit_law the log-constants 'theta',
    used when present: A / N^alpha with A = e^800 and N^alpha past the float range is a finite number."""
    logN, logD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
    if 'theta' in p:
        a, b, e, alpha, beta = p['theta']
        return np.exp(np.logaddexp(np.logaddexp(a - alpha * logN, b - beta * logD), e))
    return p['E'] + p['A'] * np.exp(-p['alpha'] * logN) + p['B'] * np.exp(-p['beta'] * logD)


def huber_objective(theta, logN, logD, logL, delta=HUBER_DELTA):
    """Sum of Huber losses of the log residuals, divided by delta (so the optimiser's tolerances are not
    swamped by delta's scale), and its gradient."""
    a, b, e, alpha, beta = theta
    t = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])  # (3, n)
    top = t.max(0)
    ex = np.exp(t - top)
    total = ex.sum(0)
    w = ex / total  # d logsumexp / d t
    r = top + np.log(total) - logL
    value = np.where(np.abs(r) <= delta, 0.5 * r * r / delta, np.abs(r) - 0.5 * delta).sum() / delta
    g = np.clip(r / delta, -1.0, 1.0) / delta
    grad = np.array([(g * w[0]).sum(), (g * w[1]).sum(), (g * w[2]).sum(),
                     -(g * w[0] * logN).sum(), -(g * w[1] * logD).sum()])
    return value, grad


def grid_objective(logN, logD, logL, delta=HUBER_DELTA):
    """The objective at every point of INIT_GRID at once (G,)."""
    a, b, e, alpha, beta = (INIT_GRID[:, i:i + 1] for i in range(5))
    t = np.stack([a - alpha * logN, b - beta * logD, np.broadcast_to(e, (len(INIT_GRID), len(logN)))])
    r = np.logaddexp.reduce(t, axis=0) - logL  # (G, n)
    return np.where(np.abs(r) <= delta, 0.5 * r * r / delta, np.abs(r) - 0.5 * delta).sum(1) / delta


def fit_law(N, D, L, starts=32, init=None):
    """Fit the law to runs (arrays N, D, L). Quasi-Newton from the `starts` best points of Hoffmann et al.'s
    4,500-point grid (ranked by their objective) and from the rows of `init`; keeps the best optimum.

    BFGS rather than scipy's L-BFGS-B: with 5 parameters the limited memory buys nothing, and L-BFGS-B's
    threaded BLAS calls on 5-vectors cost ~5 ms per iteration on a busy 2-core machine (measured), 10x the
    objective. Running all 4,500 starts takes minutes per fit; ranking them first keeps fits to seconds."""
    logN, logD, logL = np.log(np.asarray(N, float)), np.log(np.asarray(D, float)), np.log(np.asarray(L, float))
    inits = INIT_GRID[np.argsort(grid_objective(logN, logD, logL))[:starts]]
    if init is not None:
        inits = np.concatenate([np.atleast_2d(init), inits])
    best = None
    for x0 in inits:
        res = minimize(huber_objective, x0, args=(logN, logD, logL), jac=True, method='BFGS',
                       options=dict(gtol=1e-8, maxiter=2000))
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
    a, b, e, alpha, beta = best.x
    # a resample with few distinct sizes can leave a term unidentified and send its log-constant off to
    # hundreds: that constant is then infinite (and its bootstrap interval says so), not an overflow error
    E, A, B = (math.exp(v) if v < 700 else math.inf for v in (e, a, b))
    return dict(E=E, A=A, B=B, alpha=alpha, beta=beta, objective=best.fun, theta=best.x)


def bootstrap_law(N, D, L, fit, n_boot=100, seed=0, starts=2):
    """95 % intervals of the constants from fits to runs resampled with replacement (each fit starts from the
    full fit's optimum and the best grid points), and each resample's log-constants (for prediction intervals)."""
    rng = np.random.default_rng(seed)
    N, D, L = (np.asarray(a, float) for a in (N, D, L))
    samples, thetas = {k: [] for k in ('E', 'A', 'B', 'alpha', 'beta')}, []
    for _ in range(n_boot):
        pick = rng.integers(0, len(L), len(L))
        p = fit_law(N[pick], D[pick], L[pick], starts=starts, init=fit['theta'])
        thetas.append(p['theta'].tolist())
        for k in samples:
            samples[k].append(p[k])
    # 'nearest': an interval end is a fitted value, so an unidentified (infinite) constant shows as inf, not nan
    return {k: interval(v) for k, v in samples.items()}, thetas


def interval(values):
    return float(np.percentile(values, 2.5, method='nearest')), float(np.percentile(values, 97.5, method='nearest'))


def predict(fit, N, D):
    """The fitted law's loss at (N, D), with the 95 % interval of the bootstrap fits' predictions when there are any."""
    thetas = fit.get('bootstrap_thetas') or []
    pred = dict(loss=float(law(fit, N, D)))
    if thetas:
        pred['interval'] = interval([float(law(dict(theta=t), N, D)) for t in thetas])
    return pred


def fpt_of(rows):
    """FLOPs per token as a function of N along the sweep's dial: log-log interpolation between the sizes run,
    linear in log-log beyond them."""
    pairs = sorted({(r['N'], r['flops_per_token']) for r in rows})
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])

    def fpt(N):
        u = np.log(np.asarray(N, float))
        if len(x) == 1:
            return np.exp(y[0] + (u - x[0]))
        v = np.interp(u, x, y)
        lo, hi = u < x[0], u > x[-1]
        v = np.where(lo, y[0] + (u - x[0]) * (y[1] - y[0]) / (x[1] - x[0]), v)
        return np.exp(np.where(hi, y[-1] + (u - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2]), v))
    return fpt


def frontier(p, rows, C):
    """Compute-optimal loss and N for each budget in C, the law minimised over N with D = C / flops_per_token(N),
    N searched from a quarter of the smallest size run to four times the largest."""
    Ns = np.array([r['N'] for r in rows], float)
    grid = np.logspace(np.log10(Ns.min() / 4), np.log10(Ns.max() * 4), 400)
    losses = law(p, grid[None, :], np.asarray(C, float)[:, None] / fpt_of(rows)(grid)[None, :])  # (len(C), 400)
    best = losses.argmin(1)
    return losses[np.arange(len(C)), best], grid[best], (best == 0) | (best == len(grid) - 1)


def isoflop_fit(rows, key):
    """Hoffmann et al. approach 2 on the runs grouped by FLOP budget: a parabola in log N (and in log D) per
    budget, its minimum N*, D*; then N* = k C^a and D* = k' C^b by least squares in log-log. None when the
    runs are not an IsoFLOP grid."""
    if not rows or any(r['budget']['kind'] != 'flops' for r in rows):
        return None
    budgets = []
    for C in sorted({r['budget']['value'] for r in rows}):
        group = [r for r in rows if r['budget']['value'] == C and key in r['val']]
        if len({r['N'] for r in group}) < 3:
            continue
        logN, logD = np.log([r['N'] for r in group]), np.log([r['D'] for r in group])
        L = np.array([r['val'][key] for r in group])
        qN, qD = np.polyfit(logN, L, 2), np.polyfit(logD, L, 2)
        convex = qN[0] > 0 and qD[0] > 0
        budgets.append(dict(C=C, runs=len(group), convex=bool(convex), logN=logN.tolist(), loss=L.tolist(),
                            parabola=qN.tolist(),
                            N_opt=float(np.exp(-qN[1] / (2 * qN[0]))) if convex else None,
                            D_opt=float(np.exp(-qD[1] / (2 * qD[0]))) if convex else None,
                            inside=bool(convex and logN.min() <= -qN[1] / (2 * qN[0]) <= logN.max()),
                            # the best run at the smallest or largest size: the true minimum may lie beyond the grid
                            edge=bool(L.argmin() in (logN.argmin(), logN.argmax()))))
    good = [b for b in budgets if b['convex']]
    out = dict(budgets=budgets)
    if len(good) >= 2:
        logC = np.log([b['C'] for b in good])
        out['a'], out['logk_N'] = (float(v) for v in np.polyfit(logC, np.log([b['N_opt'] for b in good]), 1))
        out['b'], out['logk_D'] = (float(v) for v in np.polyfit(logC, np.log([b['D_opt'] for b in good]), 1))
    return out


def extrapolation_check(rows, holdout, keys=LOSS_KEYS, starts=32):
    """Fit without the `holdout` largest-compute runs and predict their losses: {key: [(run, actual, predicted, error %)]}."""
    order = sorted(rows, key=lambda r: r['C'])
    fit_rows, held = order[:-holdout], order[-holdout:]
    out = {}
    for key in keys:
        use = [r for r in fit_rows if key in r['val']]
        if len(use) < 2:
            continue
        p = fit_law([r['N'] for r in use], [r['D'] for r in use], [r['val'][key] for r in use], starts=starts)
        out[key] = [(r['run'], r['val'][key], float(law(p, r['N'], r['D'])),
                     100 * (float(law(p, r['N'], r['D'])) - r['val'][key]) / r['val'][key]) for r in held if key in r['val']]
    return out


def fit_laws(rows, bootstrap, starts, say):
    """Approach 3 for the overall, text and audio losses: {key: constants, intervals, runs}."""
    say("L(N, D) = E + A / N^alpha + B / D^beta   (Hoffmann et al. 2022 approach 3: Huber, delta 1e-3, on log loss; "
        f"95 % intervals from {bootstrap} bootstrap resamples of the runs)")
    say(f"{'loss':<6} {'E':>22} {'A':>26} {'alpha':>22} {'B':>26} {'beta':>22}")
    fits = {}
    for key in LOSS_KEYS:
        use = [r for r in rows if key in r['val']]
        if len(use) < 2:
            say(f"{key:<6} (fewer than 2 runs have a {key} loss)")
            continue
        N, D, L = [r['N'] for r in use], [r['D'] for r in use], [r['val'][key] for r in use]
        p = fit_law(N, D, L, starts=starts)
        ci, thetas = bootstrap_law(N, D, L, p, bootstrap) if bootstrap else ({}, [])

        def cell(k, f):
            return f"{p[k]:{f}}" + (f" [{ci[k][0]:{f}}, {ci[k][1]:{f}}]" if ci else '')
        say(f"{key:<6} {cell('E', '.3f'):>22} {cell('A', '.3g'):>26} {cell('alpha', '.3f'):>22} "
            f"{cell('B', '.3g'):>26} {cell('beta', '.3f'):>22}")
        fits[key] = dict({k: float(p[k]) for k in ('E', 'A', 'B', 'alpha', 'beta', 'objective')}, intervals=ci,
                         runs=len(use), theta=p['theta'].tolist(), bootstrap_thetas=thetas)
    return fits


def compare_text_audio(fits, say):
    if 'text' not in fits or 'audio' not in fits:
        return
    t, a = fits['text'], fits['audio']
    slower = [name for name, k in (('parameters', 'alpha'), ('data', 'beta')) if a[k] < t[k]]
    verdict = ('audio scales more slowly with both' if len(slower) == 2 else
               f"audio scales more slowly with {slower[0]} only" if slower else 'audio scales as fast or faster')
    say(f"text vs audio exponents: alpha {t['alpha']:.3f} vs {a['alpha']:.3f} (parameters), beta {t['beta']:.3f} "
        f"vs {a['beta']:.3f} (data): {verdict}. Cuervo & Marxer 2024 (Scaling Properties of Speech Language "
        f"Models, EMNLP) found the linguistic performance of speech-only LMs to scale up to three orders of "
        f"magnitude more slowly with compute than that of text LMs.")


def compute_optimal(fits, rows, say):
    """N*(C) from the fitted laws: the slope over the sampled compute with the model's own FLOPs per token, and
    Chinchilla's closed form beta / (alpha + beta), which holds where C ~ 6ND; and the compute-optimal tokens per
    parameter D* / N* at each budget. Returns {key: [(C, N*, D*), ...]}."""
    budgets = np.array(sorted({r['budget']['value'] if r['budget']['kind'] == 'flops' else r['C'] for r in rows}))
    if budgets.size > 5:
        budgets = budgets[[0, -1]]
    out = {}
    for key, p in fits.items():
        _, n_opt, edge = frontier(p, rows, budgets)
        d_opt = budgets / fpt_of(rows)(n_opt)
        slope = (math.log(n_opt[-1] / n_opt[0]) / math.log(budgets[-1] / budgets[0]) if budgets[-1] > budgets[0]
                 else float('nan'))
        say(f"{key}: compute-optimal N* ~ C^{slope:.2f} over the sampled compute (model FLOPs per token), "
            f"C^{p['beta'] / (p['alpha'] + p['beta']):.2f} where C ~ 6ND (beta / (alpha + beta))"
            + ("; N* leaves the sampled sizes" if edge.any() else ''))
        say(f"{key}: compute-optimal tokens per parameter D*/N* " +
            ', '.join(f"{d / n:.3g} at C={c:.3g}" for c, n, d in zip(budgets, n_opt, d_opt)) +
            " (Hoffmann et al. 2022: ~20; here N excludes the embedding and output layer)")
        out[key] = [(float(c), float(n), float(d)) for c, n, d in zip(budgets, n_opt, d_opt)]
    return out


def isoflop_report(rows, say):
    out = {}
    for key in LOSS_KEYS:
        iso = isoflop_fit(rows, key)
        if iso is None:
            say("IsoFLOP (approach 2): skipped, the runs are not grouped by FLOP budget (token budgets)")
            return {}
        out[key] = iso
        for b in iso['budgets']:
            if not b['convex']:
                say(f"IsoFLOP {key} C={b['C']:.3g}: no minimum (the parabola opens downwards)")
                continue
            say(f"IsoFLOP {key} C={b['C']:.3g}: N* {b['N_opt'] / 1e6:.3g} M, D* {b['D_opt'] / 1e6:.3g} M, "
                f"D*/N* {b['D_opt'] / b['N_opt']:.3g}"
                + ('' if b['inside'] else ' (outside the sizes run)')
                + (' (the best run is at the edge of the sizes: widen the grid)' if b['edge'] else ''))
        if 'a' in iso:
            say(f"IsoFLOP {key}: N* ~ C^{iso['a']:.3f}, D* ~ C^{iso['b']:.3f} (Hoffmann et al.: 0.49, 0.51)")
    return out


def extrapolation_report(rows, holdout, starts, say):
    k = holdout or max(1, round(0.1 * len(rows)))
    if len(rows) - k < 2:
        say(f"extrapolation check: {len(rows)} runs are too few to leave {k} out")
        return {}
    ext = extrapolation_check(rows, k, starts=starts)
    say(f"extrapolation check: fit without the {k} largest-compute runs, predict them:")
    for key, preds in ext.items():
        for run, actual, pred, err in preds:
            say(f"  {key:<6} {run}: actual {actual:.4f}, predicted {pred:.4f}, error {err:+.2f} %")
        say(f"  {key:<6} mean absolute error {np.mean([abs(p[3]) for p in preds]):.2f} %")
    return ext


def fit_results(rows, out_dir, bootstrap=100, holdout=0, starts=32, plot=True):
    """Fit, print and save the report (fit.txt, fit.json) and the plots next to the results. Returns the report dict."""
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} finished runs: a fit needs at least 2 (5 or more to determine the law)")
    lines = []

    def say(text):
        print(text)
        lines.append(text)
    say(f"{len(rows)} runs: N {min(r['N'] for r in rows) / 1e6:.3g}-{max(r['N'] for r in rows) / 1e6:.3g} M "
        f"non-embedding parameters (embeddings and output layer excluded), D {min(r['D'] for r in rows) / 1e6:.3g}-"
        f"{max(r['D'] for r in rows) / 1e6:.3g} M tokens, C {min(r['C'] for r in rows):.3g}-{max(r['C'] for r in rows):.3g} "
        f"FLOPs (C = D x flops_per_token, output layer included)")
    if len(rows) < 5:
        say(f"warning: 5 constants from {len(rows)} runs: the law is underdetermined, the numbers below mean little")
    fits = fit_laws(rows, bootstrap, starts, say)
    compare_text_audio(fits, say)
    optimum = compute_optimal(fits, rows, say)
    report = dict(n_runs=len(rows), fits=fits, compute_optimal=optimum, isoflop=isoflop_report(rows, say),
                  extrapolation=extrapolation_report(rows, holdout, starts, say))
    heldout = load_heldout(out_dir)
    if heldout:
        heldout_report(heldout, say)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'fit.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(os.path.join(out_dir, 'fit.json'), 'w') as f:
        json.dump(report, f, indent=1)
    if plot:
        plot_results(rows, report, out_dir, heldout)
    return report

# -----------------------------------------------------------------------------
# the held-out prediction: fit on the sweep, predict one bigger run, write the prediction down, then run it

def heldout_prediction(sc, rows, fits):
    """The held-out run, heldout_factor x the largest FLOP budget at the depth whose N lies nearest (in log) to the
    compute-optimal N* of the fitted overall law, and each fitted law's loss there."""
    C = sc['heldout_factor'] * max(sc['flops'])
    _, n_opt, edge = frontier(fits['loss'], rows, [C])
    base = apply_overrides(train.DEFAULTS, override_args(sc['train']))
    vocab = vocab_size_of(base)
    depths = [d for d in range(1, 4 * max(sc['depths']) + 1) if sc['width_per_layer'] * d % sc['head_dim'] == 0]
    sizes = {d: model_size(run_config(sc, base, d), vocab)[0] for d in depths}
    depth = min(sizes, key=lambda d: abs(math.log(sizes[d] / n_opt[0])))
    run = plan(dict(sc, depths=[depth], flops=[C]))[0]
    return dict(run=run['name'], hash=run['hash'], depth=depth, C=run['C'], N=run['N'], D=run['D'],
                N_opt=float(n_opt[0]), N_opt_beyond_search=bool(edge[0]), fitted_runs=len(rows),
                largest_fitted_C=max(r['C'] for r in rows),
                predicted={key: predict(fit, run['N'], run['D']) for key, fit in fits.items()},
                written=time.strftime('%Y-%m-%d %H:%M:%S %Z'))


def load_heldout(out_dir):
    path = os.path.join(out_dir, 'heldout.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def heldout_report(heldout, say):
    pred, row = heldout['prediction'], heldout['measured']
    say(f"held-out run {pred['run']}: C {pred['C']:.3g} ({pred['C'] / pred['largest_fitted_C']:.1f}x the largest "
        f"fitted run), N {pred['N'] / 1e6:.3g} M (fitted N* {pred['N_opt'] / 1e6:.3g} M), D {pred['D'] / 1e6:.3g} M; "
        f"predicted {pred['written']}, before the run")
    for key, p in pred['predicted'].items():
        if key not in row['val']:
            continue
        actual = row['val'][key]
        band = (f" (95 % interval {p['interval'][0]:.4f}-{p['interval'][1]:.4f}, "
                f"{'inside' if p['interval'][0] <= actual <= p['interval'][1] else 'outside'})" if 'interval' in p else '')
        say(f"  {key:<6} predicted {p['loss']:.4f}{band}, measured {actual:.4f}, "
            f"error {100 * (p['loss'] - actual) / actual:+.2f} %")


def run_heldout(sc, rows, report, sweep_dir):
    """Predict (once: prediction.json is written before the run and never rewritten), run, compare."""
    path = os.path.join(sweep_dir, 'prediction.json')
    if os.path.exists(path):
        with open(path) as f:
            pred = json.load(f)
        print(f"held-out prediction: {path}, written {pred['written']}")
    else:
        pred = heldout_prediction(sc, rows, report['fits'])
        with open(path + '.tmp', 'w') as f:
            json.dump(pred, f, indent=1)
        os.replace(path + '.tmp', path)
        print(f"held-out prediction written to {path} before its run: " + ', '.join(
            f"{k} {p['loss']:.4f}" for k, p in pred['predicted'].items()) + f" at depth {pred['depth']}, "
            f"N {pred['N'] / 1e6:.3g} M, D {pred['D'] / 1e6:.3g} M, C {pred['C']:.3g}")
    run = plan(dict(sc, depths=[pred['depth']], flops=[sc['heldout_factor'] * max(sc['flops'])]))[0]
    if run['hash'] != pred['hash']:
        raise ValueError(f"{path} predicts run {pred['run']}, but the sweep config now plans {run['name']}; "
                         f"move it away to predict anew")
    results_path = os.path.join(sweep_dir, 'heldout.jsonl')  # apart from results.jsonl: never fitted on
    record_finished([run], results_path)
    if not any(r['hash'] == run['hash'] for r in load_results(results_path)) and execute([run], sc, results_path):
        return 1
    row = next(r for r in load_results(results_path) if r['hash'] == run['hash'])
    heldout = dict(prediction=pred, measured=row)
    with open(os.path.join(sweep_dir, 'heldout.json'), 'w') as f:
        json.dump(heldout, f, indent=1)
    lines = []

    def say(text):
        print(text)
        lines.append(text)
    heldout_report(heldout, say)
    with open(os.path.join(sweep_dir, 'fit.txt'), 'a') as f:
        f.write('\n'.join(lines) + '\n')
    plot_results(rows, report, sweep_dir, heldout)
    return 0

# -----------------------------------------------------------------------------
# plots

def plot_results(rows, report, out_dir, heldout=None):
    import matplotlib  # here: slow to import, and the file-only backend must be chosen before pyplot loads
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [k for k in LOSS_KEYS if k in report['fits']]
    sizes = sorted({r['N'] for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    C_all = np.array([r['C'] for r in rows])
    C_top = max(C_all.max() * 4, heldout['prediction']['C'] * 1.5 if heldout else 0)
    Cs = np.logspace(np.log10(C_all.min() / 2), np.log10(C_top), 100)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        p = report['fits'][key]
        fpt = fpt_of(rows)
        for N, color in zip(sizes, colors):
            own = sorted((r for r in rows if r['N'] == N and key in r['val']), key=lambda r: r['C'])
            ax.scatter([r['C'] for r in own], [r['val'][key] for r in own], color=color, s=18, zorder=3,
                       label=f"N {N / 1e6:.2g} M")
            ax.plot(Cs, law(p, N, Cs / fpt(N)), color=color, lw=0.8, alpha=0.6)
        best, _, _ = frontier(p, rows, Cs)
        ax.plot(Cs, best, 'k--', lw=1.2, label='compute-optimal (fit)')
        if heldout and key in heldout['prediction']['predicted'] and key in heldout['measured']['val']:
            pred, C = heldout['prediction']['predicted'][key], heldout['prediction']['C']
            if 'interval' in pred:  # the bootstrap fits' 95 % range (a few resamples need not bracket the fit)
                ax.plot([C, C], pred['interval'], color='k', lw=1, zorder=4)
            ax.scatter([C], [pred['loss']], marker='o', facecolors='none', edgecolors='k', s=40, zorder=4,
                       label='held-out: predicted')
            ax.scatter([C], [heldout['measured']['val'][key]], marker='*', s=120, color='crimson', zorder=5,
                       label='held-out: measured')
        seen = [r['val'][key] for r in rows + ([heldout['measured']] if heldout else []) if key in r['val']]
        seen += [heldout['prediction']['predicted'][key]['loss']] if heldout and key in heldout['measured']['val'] else []
        lo, hi = min(seen), max(seen)
        ax.set_ylim(lo - 0.1 * (hi - lo) - 0.02, hi + 0.1 * (hi - lo) + 0.02)
        ax.set_xscale('log')
        ax.set_xlabel('C, training FLOPs (output layer included)')
        ax.set_ylabel(f'validation loss ({key}), nats per target token')
        ax.set_title(f"{key}: E {p['E']:.2f}, alpha {p['alpha']:.2f}, beta {p['beta']:.2f}")
        ax.grid(alpha=0.3, which='both')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'loss_vs_compute.png'), dpi=120)
    plt.close(fig)
    iso = report['isoflop']
    if not iso:
        return
    fig, axes = plt.subplots(1, len(iso) + 1, figsize=(4.5 * (len(iso) + 1), 4), squeeze=False)
    for ax, (key, res) in zip(axes[0], iso.items()):
        budget_colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(res['budgets']), 1)))
        for b, color in zip(res['budgets'], budget_colors):
            ax.scatter(np.exp(b['logN']), b['loss'], color=color, s=18, label=f"C {b['C']:.2g}")
            u = np.linspace(min(b['logN']) - 0.3, max(b['logN']) + 0.3, 100)
            ax.plot(np.exp(u), np.polyval(b['parabola'], u), color=color, lw=1)
            if b['convex']:
                ax.axvline(b['N_opt'], color=color, ls=':', lw=0.8)
        ax.set_xscale('log')
        ax.set_xlabel('N, non-embedding parameters')
        ax.set_ylabel(f'validation loss ({key})')
        ax.set_title(f'IsoFLOP curves, {key}')
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for key, res in iso.items():
        good = [b for b in res['budgets'] if b['convex']]
        ax.scatter([b['C'] for b in good], [b['N_opt'] for b in good], s=18, label=f"N* ({key})")
        if 'a' in res:
            c = np.array([min(b['C'] for b in good), max(b['C'] for b in good)])
            ax.plot(c, np.exp(res['logk_N']) * c ** res['a'], lw=1, label=f"{key}: N* ~ C^{res['a']:.2f}")
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('C, training FLOPs')
    ax.set_ylabel('compute-optimal N*')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'isoflop.png'), dpi=120)
    plt.close(fig)

# -----------------------------------------------------------------------------

def main(argv):
    if argv[:1] == ['fit']:
        if len(argv) < 2 or argv[1].startswith('--'):
            raise ValueError("usage: python sweep.py fit out/sweep_<name>/results.jsonl [--bootstrap=100 --holdout=0 --starts=32]")
        opts = apply_overrides(dict(bootstrap=100, holdout=0, starts=32), argv[2:])
        return fit_results(load_results(argv[1]), os.path.dirname(argv[1]) or '.', **opts)
    sc = apply_overrides(SWEEP_DEFAULTS, argv)
    return run_sweep(sc)


if __name__ == '__main__':
    code = configurator.run(main)
    sys.exit(code if isinstance(code, int) else 0)
