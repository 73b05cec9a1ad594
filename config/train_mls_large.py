"""
MLS English (SNAC 24 kHz tokens), a ~300 M non-embedding-parameter model on 8 GPUs (one node).

    python prepare.py --source=mls --name=mls_full --hours=10000 --workers=16
    torchrun --standalone --nproc_per_node=8 train.py config/train_mls_large.py
    python train.py config/train_mls_large.py   # one GPU: the same global batch (grad_accum counts all processes)

Estimates, not measurements: 24 layers, width 1024 (302 M non-embedding parameters); the full MLS English
conversion (~10,000 hours, ~3 B audio tokens). Global batch 8 GPUs x 16 x 2048 x 4 = 1 M tokens per step;
at roughly 80-100 k tokens/s per H100, 8 GPUs, 6,000 steps (6.3 B tokens, ~2 epochs) take about 3 hours
(one GPU: about a day). Expect validation audio loss below the small config's.
"""
dataset = 'mls_full'
out_dir = 'out/mls_large'
n_layer = 24
n_head = 16
n_embd = 1024
block_size = 2048
batch_size = 16
grad_accum = 32
max_iters = 6000
learning_rate = 3e-4
min_lr = 3e-5
warmup_iters = 500
schedule = 'wsd'
eval_interval = 500
eval_examples = 512
log_interval = 20
ckpt_interval = 500
compile = True
