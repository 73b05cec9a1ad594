"""
A CPU IsoFLOP sweep on a natural voice (hibari, word by word, 256 codes per level): 5 sizes x 3 FLOP budgets, then a
held-out run at 4x the largest budget whose loss is predicted before it starts.

    python prepare.py --source=tiny --name=hibari_20k --voices=hibari --codec=mel --mel_codes=256 --tts_words=1.0 --n_train=20000
    python sweep.py config/sweep_tiny.py --dry_run=True   # the 15 runs with N, D, C and steps; trains nothing
    python sweep.py config/sweep_tiny.py                  # runs what is missing, fits, predicts, runs the held-out run
    python sweep.py fit out/sweep_tiny/results.jsonl      # refit and replot from the results alone

Sizes: n_layer = depth in {1, ..., 5}, n_embd = 64 * depth (nanochat's aspect ratio), head dim 32: 0.05-6.1 M
non-embedding parameters. Budgets 1.2e13, 2.4e13 and 4.8e13 FLOPs (model.flops_per_token, the output layer over the
12,554-id vocabulary included): each size trains on D = C / flops_per_token tokens, from 0.17 M (depth 5 at 1.2e13)
to 8.7 M (depth 1 at 4.8e13), always less than one pass over the 13.7 M-token training split (plan() refuses runs
that would repeat data). Batches of 2 x 512 tokens, so that the smallest run still takes 165 steps.

Learning rate: 2e-3 at width 256 scaled by (256 / n_embd) ** 0.5 (nanochat's AdamW rule), cosine to a tenth after 5 %
warm-up. Checked on two widths at the smallest budget (docs/results.md, Scaling laws): lr_ref 1e-3 / 2e-3 / 4e-3 gave
2.72 / 2.49 / 2.49 at width 96 and 3.12 / 3.11 / 3.63 at width 192: 2e-3 is at or next to the best for both.
bf16 and torch.compile: on an AVX-512 CPU with native bf16 compiled steps run ~2x faster than eager (bench.py), and a
cold compile (~15 s) is small against runs of one to ten minutes. On an AVX2-only CPU use --train="{... 'dtype':
'float32', 'compile': False}" and expect several times the wall time.

Measured on 2 AVX-512 cores (docs/results.md, Scaling laws): the 15 runs in 36.5 minutes, the held-out run (depth 2,
1.92e14 FLOPs, 14.1 M tokens) in 11.3, ~50 minutes in all. Overall loss 2.42 -> 1.82 for the best size per budget;
audio 2.58 nats per code at the largest budget (uniform ln 256 = 5.55). The held-out run's overall loss was predicted
to 1.5 % (audio 4.6 %, text 28 %); compute-optimal ~20 tokens per non-embedding parameter.
"""
name = 'tiny'
depths = [1, 2, 3, 4, 5]
width_per_layer = 64
head_dim = 32
lr_ref = 2e-3
lr_ref_width = 256
lr_exponent = 0.5
min_lr_frac = 0.1
warmup_frac = 0.05
flops = [1.2e13, 2.4e13, 4.8e13]
heldout_factor = 4
max_epochs = 1.05          # the held-out run at depth 2 (14.1 M tokens) reads 3 % of the 13.7 M-token split twice
train = {
    'dataset': 'hibari_20k',
    'block_size': 512,
    'batch_size': 2,
    'eval_examples': 128,
    'log_interval': 20,
    'ckpt_interval': 200,
    'dtype': 'bfloat16',
    'compile': True,
}
