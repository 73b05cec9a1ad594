"""
Train snacgpt on the token files that prepare.py wrote.

    python train.py config/train_tiny.py                          # CPU, the tiny corpus, 11 minutes on 2 cores
    python train.py config/train_tiny.py --max_iters=50 --compile=False
    python train.py config/train_tiny.py --resume=True            # continue a killed run
    python train.py config/train_qa.py --init_from=out/speak/ckpt.pt  # fine-tune another run's weights
    torchrun --standalone --nproc_per_node=8 train.py config/train_mls_large.py
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --master_port=29500 --nproc_per_node=8 train.py ...

One code path for one process and for DDP (torchrun sets RANK/WORLD_SIZE; NCCL on CUDA, gloo on CPU).
Every value below can be overridden from a config file or the command line (configurator.py).
"""
import json
import math
import os
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import eval as evaluation
from codec import codec_to_dict, load_codec
from common import check_expected_vocab, format_mfu, peak_flops, pick_device, pick_dtype
from configurator import apply_overrides, run
from model import GPT, GPTConfig, IGNORE_INDEX
from tokenfile import load_split, read_tokens
from tokenizer import FRAME_LEN, FRAME_SECONDS, TASKS, Tokenizer

# -----------------------------------------------------------------------------
# default config (see config/ for complete runs)
DEFAULTS = dict(
    # data and output
    dataset='tiny',             # reads data/<dataset>/ (prepare.py)
    data_root='data',           # folder holding the datasets
    out_dir='out/tiny',         # ckpt.pt, eval.jsonl and log.txt land here
    resume=False,               # continue from out_dir/ckpt.pt (step, optimizer, RNG, data order)
    init_from='',               # a checkpoint whose weights start this run (step 0, a fresh optimizer): fine-tuning;
                                # its shape, vocabulary and codec must be this run's. resume, when there is a
                                # checkpoint to resume, comes first
    seed=1337,
    # model
    n_layer=4,
    n_head=4,
    n_embd=256,
    block_size=512,             # window length; windows start at example boundaries
    tie_weights=True,
    dropout=0.0,
    # optimization
    batch_size=8,               # windows per micro-step per process
    grad_accum=1,               # micro-steps per optimizer step, summed over all processes
    max_iters=1000,
    learning_rate=1e-3,
    min_lr=1e-4,
    schedule='cosine',          # 'cosine' (warmup then cosine) or 'wsd' (warmup, stable, linear decay)
    warmup_iters=50,
    decay_frac=0.2,             # wsd: the last fraction of steps that decays
    schedule_clock=False,       # with a time_limit: the schedule is as far along as the larger share, of max_iters or of
                                # time_limit, so a slower machine still ends its decay when the time limit stops it
    optimizer='adamw',          # 'adamw', or 'muon' for the blocks' matrices (AdamW for the rest; model.configure_optimizers)
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,
    mix_tts=1.0,                # relative sampling weight of each task's training examples (1 = as prepared)
    mix_asr=1.0,
    mix_text=1.0,
    mix_chat=1.0,
    target_only_loss=True,      # loss on the target span only (TTS: audio, ASR: transcript); it is what lets a tiny model learn ASR
    # evaluation, logging, checkpoints
    eval_interval=200,
    eval_examples=128,          # fixed validation (and training) examples scored at each eval
    log_interval=10,
    ckpt_interval=200,          # also written at every eval and at the end
    time_limit=0.0,             # seconds; stop cleanly (with a checkpoint) after this much training (a resumed run
                                # counts its earlier seconds too), 0 = no limit
    final_eval=False,           # run eval.py's full evaluation (ASR/TTS measures) on the final checkpoint
    wandb_log=False,
    wandb_project='snacgpt',
    # system
    device='auto',              # 'auto' picks cuda, then mps, then cpu
    dtype='auto',               # 'auto': bfloat16 autocast on CUDA and on CPUs with fast bf16 (AVX-512), else float32
    compile=True,               # torch.compile: faster on CUDA and, with bf16, on CPU too (bench.py); costs 15-25 s of compiling per model size on CPU
    threads=0,                  # CPU threads, 0 = torch's default
)

# -----------------------------------------------------------------------------
# data: windows of block_size + 1 tokens that start at example boundaries

def task_cdf(idx, cfg):
    """Cumulative sampling probabilities of the examples, each weighted by its task's mix_<task> value."""
    mix = np.array([cfg[f'mix_{task}'] for task in TASKS], dtype=np.float64)
    if (mix < 0).any():
        raise ValueError(f"mix_* weights must be >= 0, got {dict(zip(TASKS, mix.tolist()))}")
    weights = mix[idx[:, 2]]
    if not weights.sum() > 0:
        raise ValueError(f"the training split has no example of a task with positive weight "
                         f"({dict(zip(TASKS, mix.tolist()))})")
    return np.cumsum(weights) / weights.sum()


def draw_windows(rng, idx, cdf, n, block_size):
    """n windows, each a list of examples drawn by task weight: the first starts the window (a window begins at
    an example boundary), more follow until block_size + 1 tokens are filled. Packing random examples rather
    than the next ones in the file matters: the file keeps an utterance's TTS and ASR examples side by side, so a
    window running on in file order would show the ASR transcript (as the TTS prompt) just before asking for it."""
    windows = []
    for _ in range(n):
        examples, filled = [], 0
        while filled < block_size + 1:
            e = min(int(np.searchsorted(cdf, rng.random(), side='right')), len(idx) - 1)
            examples.append(e)
            filled += int(idx[e, 1])
        windows.append(examples)
    return windows


def target_span(tok, task, ids, target_start):
    """Where an example's loss is taken: from its target start to the end; in a chat example the assistant's
    turns only (tokenizer.assistant_mask), in an ASR example the transcript only (tokenizer.asr_target)."""
    if TASKS[task] == 'chat':
        return tok.assistant_mask(ids)
    if TASKS[task] == 'asr':
        return tok.asr_target(ids, target_start)
    mask = np.zeros(len(ids), dtype=bool)
    mask[target_start:] = True
    return mask


def window_batch(path, idx, windows, block_size, target_only, device, tok):
    """Packed training windows from draw_windows(): the examples of each row laid end to end, cut to the block.
    With target_only, the loss sees only each example's target span (TTS: audio, ASR: transcript, chat: the
    assistant's turns)."""
    tokens = read_tokens(path)  # a fresh memmap per batch: memmaps kept open grow the process's memory
    x = np.empty((len(windows), block_size + 1), dtype=np.int64)
    is_target = np.zeros((len(windows), block_size + 1), dtype=bool)
    for b, examples in enumerate(windows):
        pos = 0
        for e in examples:
            s, n, task, t = idx[e]
            m = min(n, block_size + 1 - pos)
            x[b, pos:pos + m] = tokens[s:s + m]
            is_target[b, pos:pos + m] = target_span(tok, task, x[b, pos:pos + m], t)
            pos += m
            if pos == block_size + 1:
                break
    y = x[:, 1:].copy()
    if target_only:
        y[~is_target[:, 1:]] = IGNORE_INDEX
    return to_device(x[:, :-1], device), to_device(y, device)


def example_batch(path, idx, examples, block_size, target_only, tok, device):
    """Evaluation rows: one whole example per row (cut to the block), padding ignored. Also returns each row's task."""
    tokens = read_tokens(path)
    x = np.full((len(examples), block_size + 1), tok.pad, dtype=np.int64)
    y = np.full((len(examples), block_size), IGNORE_INDEX, dtype=np.int64)
    for b, e in enumerate(examples):
        s, n, task, t = idx[e]
        n = min(n, block_size + 1)
        x[b, :n] = tokens[s:s + n]
        keep = target_span(tok, task, x[b, :n], t)[1:] if target_only else np.ones(n - 1, dtype=bool)
        y[b, :n - 1] = np.where(keep, x[b, 1:n], IGNORE_INDEX)  # y[i] predicts x[i+1]
    return to_device(x[:, :-1], device), to_device(y, device), idx[examples, 2]


def to_device(a, device):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.pin_memory().to(device, non_blocking=True) if device.startswith('cuda') else t.to(device)


# -----------------------------------------------------------------------------
# schedule, evaluation, checkpoints

def learning_rate(step, cfg, seconds=0.0):
    """The learning rate at a step, after `seconds` of training (read only with schedule_clock and a time_limit)."""
    lr, lo, warm, total = cfg['learning_rate'], cfg['min_lr'], cfg['warmup_iters'], cfg['max_iters']
    if step < warm:
        return lr * (step + 1) / warm
    if cfg['schedule_clock'] and cfg['time_limit']:  # the step the clock says the run is at, when it is further on
        step = max(step, total * min(seconds / cfg['time_limit'], 1.0))
    if cfg['schedule'] == 'wsd':
        decay_start = total - int(cfg['decay_frac'] * total)
        return lr if step < decay_start else lo + (lr - lo) * (total - step) / max(total - decay_start, 1)
    ratio = min((step - warm) / max(total - warm, 1), 1.0)
    return lo + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - lo)


@torch.no_grad()
def evaluate(model, path, idx, examples, cfg, tok, device, autocast):
    """Loss on a fixed sample (nats per target token): 'loss' overall, 'text' and 'audio' by the kind of
    token predicted, 'task_<task>' by the task of the example."""
    model.eval()
    sums = {}

    def add(key, losses):
        if losses.numel():
            s, n = sums.get(key, (0.0, 0))
            sums[key] = (s + losses.sum().item(), n + losses.numel())

    for i in range(0, len(examples), cfg['batch_size']):
        x, y, tasks = example_batch(path, idx, examples[i:i + cfg['batch_size']], cfg['block_size'],
                                    cfg['target_only_loss'], tok, device)
        with autocast:
            logits, _ = model(x, y)
        losses = F.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=IGNORE_INDEX, reduction='none')
        valid = y != IGNORE_INDEX
        is_audio = (y >= tok.audio_offset) & valid
        add('loss', losses[valid])
        add('audio', losses[is_audio])
        add('text', losses[valid & ~is_audio])
        for k, task in enumerate(TASKS):
            rows = torch.from_numpy(tasks == k).to(device)
            add(f'task_{task}', losses[valid & rows[:, None]])
    model.train()
    return {k: s / n for k, (s, n) in sums.items()}


def save_checkpoint(path, state):
    """Write atomically: a killed run leaves the previous checkpoint, never a half-written one."""
    tmp = path + '.tmp'
    torch.save(state, tmp)
    os.replace(tmp, path)


def same_codec(a, b):
    """Two codec records (codec_record) that decode the same codes to the same audio."""
    if a is None or b is None or a.keys() != b.keys():
        return a == b
    books_a, books_b = a.get('codebooks', []), b.get('codebooks', [])  # numpy arrays: compared one by one
    same_books = len(books_a) == len(books_b) and all(np.array_equal(x, y) for x, y in zip(books_a, books_b))
    return same_books and all(a[k] == b[k] for k in a if k != 'codebooks')


def load_init_weights(path, model_args, meta_path, codec_state):
    """The weights of a checkpoint another run trained, checked against this run: the same model shape, the same
    vocabulary, the same codec (the codes of one codec mean nothing to a model trained on another's)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init_from={path}: no such checkpoint")
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    if ckpt['model_args'] != model_args:
        diff = {k: (ckpt['model_args'].get(k), v) for k, v in model_args.items() if ckpt['model_args'].get(k) != v}
        raise ValueError(f"--init_from={path}: the checkpoint's model differs from this run's (theirs, ours): {diff}")
    check_expected_vocab(Tokenizer.from_dict(ckpt['vocab']), meta_path, f"--init_from={path}")
    if not same_codec(ckpt['codec'], codec_state):
        raise ValueError(f"--init_from={path}: the checkpoint was trained on another codec's codes (prepare the data "
                         f"with --codec=mel:<its dataset>/codec.npz)")
    return ckpt['model'], init_record(path, ckpt)


def init_record(path, ckpt):
    """Where a fine-tuned run's weights came from, down the chain: the checkpoint, its step and the data it trained
    on (eval.py checks that the QA world's held-out facts were not spoken there either)."""
    c = ckpt['config']
    return dict(checkpoint=os.path.abspath(path), step=ckpt['step'],
                data=os.path.abspath(os.path.join(c['data_root'], c['dataset'])), before=ckpt.get('init_from'))


def codec_record(data_dir, meta):
    """What sampling needs to rebuild the dataset's codec, embedded in every checkpoint."""
    info = meta['codec']
    if info.get('stand_in'):  # the stand-in's codebooks are small: embed them, so a checkpoint decodes on its own
        return codec_to_dict(load_codec('mel:' + os.path.join(data_dir, 'codec.npz')))
    return {'kind': info['kind'], 'source': info['source']}


# -----------------------------------------------------------------------------

def setup_device(cfg):
    ddp = int(os.environ.get('RANK', -1)) != -1
    device = pick_device(cfg['device'])
    rank, world = 0, 1
    if ddp:
        rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
        dist.init_process_group(backend='nccl' if device == 'cuda' else 'gloo')
        if device == 'cuda':
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
    if cfg['threads']:
        torch.set_num_threads(cfg['threads'])
    device_type = device.split(':')[0]
    dtype = pick_dtype(cfg['dtype'], device_type)
    return ddp, rank, world, device, device_type, dtype, cfg['compile'] and device_type != 'mps'


def train(cfg):
    ddp, rank, world, device, device_type, dtype, use_compile = setup_device(cfg)
    master = rank == 0
    if cfg['grad_accum'] % world:
        raise ValueError(f"grad_accum={cfg['grad_accum']} must be divisible by the {world} processes")
    accum = cfg['grad_accum'] // world  # each process does its share of the micro-steps
    autocast = torch.autocast(device_type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    os.makedirs(cfg['out_dir'], exist_ok=True)
    ckpt_path = os.path.join(cfg['out_dir'], 'ckpt.pt')
    result_path = os.path.join(cfg['out_dir'], 'result.json')
    if master and os.path.exists(result_path):
        os.remove(result_path)  # a result.json stands only for a run that finished
    log = open(os.path.join(cfg['out_dir'], 'log.txt'), 'a') if master else None

    def say(msg):
        if master:
            print(msg, flush=True)
            log.write(msg + '\n')
            log.flush()

    # data: the vocabulary and codec come from meta.json, so checkpoints carry exactly what the data used
    data_dir = os.path.join(cfg['data_root'], cfg['dataset'])
    train_tokens, train_idx, meta = load_split(data_dir, 'train')
    val_tokens, val_idx, _ = load_split(data_dir, 'val')
    train_path, val_path = (os.path.join(data_dir, f'{s}.bin') for s in ('train', 'val'))
    tok = Tokenizer.from_dict(meta['vocab'])
    cdf = task_cdf(train_idx, cfg)
    if len(train_tokens) < cfg['block_size'] + 1:
        raise ValueError(f"{train_path}: the split has {len(train_tokens)} tokens, fewer than one window of "
                         f"{cfg['block_size'] + 1} (lower --block_size or prepare more data)")
    fixed = np.random.default_rng(0)  # the eval sample never changes within or across runs
    val_sample = fixed.permutation(len(val_idx))[:cfg['eval_examples']]
    train_sample = fixed.permutation(len(train_idx))[:cfg['eval_examples']]

    # model and optimizer
    model_args = dict(vocab_size=tok.vocab_size, block_size=cfg['block_size'], n_layer=cfg['n_layer'],
                      n_head=cfg['n_head'], n_embd=cfg['n_embd'], tie_weights=cfg['tie_weights'], dropout=cfg['dropout'])
    torch.manual_seed(cfg['seed'])
    model = GPT(GPTConfig(**model_args)).to(device)
    optimizer = model.configure_optimizers(cfg['weight_decay'], cfg['learning_rate'], (cfg['beta1'], cfg['beta2']), device_type,
                                           cfg['optimizer'])
    rng = np.random.default_rng(cfg['seed'])  # the same on every rank: each draws the global batch and takes its share
    step, best_val, tokens_seen, seconds_before, lineage = 0, float('inf'), 0, 0.0, None
    codec_state = codec_record(data_dir, meta) if master or cfg['init_from'] else None  # checkpoints carry it
    if cfg['resume'] and os.path.exists(ckpt_path):
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt['model_args'] != model_args:
            raise ValueError(f"{ckpt_path} was trained with {ckpt['model_args']}, not {model_args}")
        if ckpt['config'].get('optimizer', 'adamw') != cfg['optimizer']:
            raise ValueError(f"{ckpt_path} was trained with --optimizer={ckpt['config'].get('optimizer', 'adamw')}, "
                             f"not --optimizer={cfg['optimizer']}: resume it with its own")
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        step, best_val, tokens_seen = ckpt['step'], ckpt['best_val_loss'], ckpt['tokens_seen']
        seconds_before = ckpt.get('seconds', 0.0)  # the training time of the runs before this one
        lineage = ckpt.get('init_from')
        rng.bit_generator.state = ckpt['rng']['numpy']
        torch.set_rng_state(ckpt['rng']['torch'])
        say(f"resumed from {ckpt_path} at step {step}")
    elif cfg['init_from']:
        weights, lineage = load_init_weights(cfg['init_from'], model_args, os.path.join(data_dir, 'meta.json'),
                                             codec_state)
        model.load_state_dict(weights)
        say(f"weights from {cfg['init_from']}")
    elif cfg['resume']:
        say(f"no checkpoint at {ckpt_path}: starting from scratch")
    raw_model = model  # checkpoints hold the uncompiled module: no '_orig_mod.' prefixes
    if use_compile:
        model = torch.compile(model)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device_type == 'cuda' else None)
    codec_info = meta['codec']

    def checkpoint():
        if master:
            save_checkpoint(ckpt_path, dict(
                model=raw_model.state_dict(), model_args=model_args, vocab=tok.to_dict(), codec=codec_state,
                codec_info=codec_info, config=cfg, data_meta=meta, optimizer=optimizer.state_dict(), step=step,
                tokens_seen=tokens_seen, best_val_loss=best_val, seconds=seconds, init_from=lineage,
                rng=dict(numpy=rng.bit_generator.state, torch=torch.get_rng_state())))

    tokens_per_step = cfg['batch_size'] * cfg['block_size'] * cfg['grad_accum']
    n_params = raw_model.num_params()
    say(f"config: {json.dumps(cfg)}")
    say(f"torch {torch.__version__} | device {device} x{world} | dtype {dtype} | compile {use_compile} | "
        f"codec {codec_info.get('label', codec_info['kind'])}")
    say(f"model: {n_params / 1e6:.2f} M non-embedding params, {raw_model.num_params(False) / 1e6:.2f} M total | "
        f"{tokens_per_step:,} tokens per step | {len(train_idx):,} training examples")
    wandb = None
    if cfg['wandb_log'] and master:
        import wandb
        wandb.init(project=cfg['wandb_project'], config=cfg, resume='allow')
    peak = peak_flops(device, dtype)
    say(f"MFU against a peak of {peak / 1e12:.2f} TFLOP/s in {dtype} " + ('(data sheet)' if device_type == 'cuda' else '(measured: the best of a few matmuls on these threads)')
        if peak else f"no MFU: no peak FLOP/s known for {device}")

    def run_eval():
        nonlocal best_val
        # the uncompiled module: eval batches have other shapes, and recompiling for them costs more than it saves
        val = evaluate(raw_model, val_path, val_idx, val_sample, cfg, tok, device, autocast)
        trn = evaluate(raw_model, train_path, train_idx, train_sample, cfg, tok, device, autocast)
        best_val = min(best_val, val['loss'])
        row = dict(step=step, tokens=tokens_seen, time=time.time(), val=val, train=trn)
        if master:
            with open(os.path.join(cfg['out_dir'], 'eval.jsonl'), 'a') as f:
                f.write(json.dumps(row) + '\n')
            if wandb:
                wandb.log({'step': step, **{f'val/{k}': v for k, v in val.items()}, **{f'train/{k}': v for k, v in trn.items()}})
        say(f"eval step {step}: val " + ' '.join(f"{k} {v:.3f}" for k, v in val.items()) +
            f" | train loss {trn['loss']:.3f}")
        return val

    t_start, t_last, timed_tokens, timed_time, losses, last_val = time.time(), time.time(), 0, 0.0, [], None
    seconds = seconds_before  # of training, the same on every rank: the schedule and the time limit read it
    model.train()
    while step < cfg['max_iters']:
        lr = learning_rate(step, cfg, seconds)
        for group in optimizer.param_groups:
            group['lr'] = lr
        batch = draw_windows(rng, train_idx, cdf, cfg['batch_size'] * cfg['grad_accum'], cfg['block_size'])  # the global batch
        mine = [batch[i:i + cfg['batch_size']] for i in range(0, len(batch), cfg['batch_size'])][rank * accum:(rank + 1) * accum]
        loss_sum, audio_tokens, logit_positions = 0.0, 0, 0
        for micro in range(accum):
            x, y = window_batch(train_path, train_idx, mine[micro], cfg['block_size'], cfg['target_only_loss'], device,
                                tok)
            audio_tokens += int((x >= tok.audio_offset).sum())
            logit_positions += int((y != IGNORE_INDEX).sum()) if not use_compile else y.numel()  # see GPT.forward
            if ddp:  # sync gradients on the last micro-step only
                model.require_backward_grad_sync = micro == accum - 1
            with autocast:
                _, loss = model(x, y, all_logits=False)
            (loss / accum).backward()
            loss_sum += loss.item() / accum
        elapsed = time.time() - t_start
        if ddp:  # the clock averaged too, so that every rank takes the same learning rate and stops at the same step
            t = torch.tensor([loss_sum, audio_tokens, elapsed], dtype=torch.float64, device=device)
            dist.all_reduce(t)
            loss_sum, audio_tokens, elapsed = t[0].item() / world, int(t[1].item()), t[2].item() / world
        seconds = seconds_before + elapsed
        if not math.isfinite(loss_sum):
            say(f"step {step}: the loss is {loss_sum}; stopping. The last good checkpoint stays at {ckpt_path} "
                f"(lower --learning_rate or use --dtype=float32, then --resume=True)")
            raise SystemExit(1)
        if cfg['grad_clip'] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['grad_clip'])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        losses.append(loss_sum)

        now = time.time()
        dt, t_last = now - t_last, now
        if step > 2:  # the first steps include compiling and warm-up: keep them out of the throughput
            timed_tokens += tokens_per_step
            timed_time += dt
        if step % cfg['log_interval'] == 0 or step == 1:
            tps = tokens_per_step / dt
            audio_s = audio_tokens / FRAME_LEN * FRAME_SECONDS / dt
            mfu = raw_model.estimate_mfu(tps / world, peak, cfg['block_size'], logit_positions / (accum * x.numel())) if peak else None
            rate = (timed_time / max(timed_tokens, 1)) * tokens_per_step if timed_tokens else dt
            eta = rate * (cfg['max_iters'] - step)
            say(f"step {step}/{cfg['max_iters']} | loss {loss_sum:.4f} | lr {lr:.2e} | {dt * 1000:.0f} ms | "
                f"{tps:,.0f} tok/s | {audio_s:.1f} s audio/s | {format_mfu(mfu)} | eta {eta / 60:.1f} min")
            if wandb:
                wandb.log({'step': step, 'train/loss': loss_sum, 'lr': lr, 'tok_per_s': tps})
        out_of_time = cfg['time_limit'] and seconds > cfg['time_limit']
        if step % cfg['eval_interval'] == 0 or step == cfg['max_iters'] or out_of_time:
            last_val = run_eval()
        if step % cfg['ckpt_interval'] == 0 or step % cfg['eval_interval'] == 0 or step == cfg['max_iters'] or out_of_time:
            checkpoint()
        if out_of_time:
            say(f"time limit of {cfg['time_limit']:.0f} s reached at step {step}")
            break
        t_last = time.time()  # evals and checkpoints stay out of the step time

    if timed_time:
        say(f"throughput: {timed_tokens / timed_time:,.0f} tok/s over {step} steps (compile and warm-up excluded) | "
            f"wall {time.time() - t_start:.0f} s")
    if ddp:
        dist.destroy_process_group()
    if log:
        log.close()
    if master and cfg['final_eval']:
        evaluation.main([f'--ckpt={ckpt_path}', f"--data={data_dir}"])
    result = dict(step=step, best_val_loss=best_val, tokens_seen=tokens_seen, val=last_val,
                  wall_time=time.time() - t_start, n_params=n_params, flops_per_token=raw_model.flops_per_token(),
                  tokens_per_second=timed_tokens / timed_time if timed_time else None)
    if master:  # what sweeps read back; written last, so it exists only for a finished run
        with open(result_path, 'w') as f:
            json.dump(result, f, indent=1)
    return dict(result, losses=losses)


def main(argv):
    cfg = apply_overrides(DEFAULTS, argv, verbose=int(os.environ.get('RANK', 0)) == 0)
    return train(cfg)


if __name__ == '__main__':
    run(main)
