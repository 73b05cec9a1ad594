"""
MLS English (SNAC 24 kHz tokens), a GPT-2-small-sized model on one GPU.

    python prepare.py --source=mls --name=mls --shards=40
    python train.py config/train_mls_small.py

Estimates, not measurements: 85 M non-embedding parameters (12 layers, width 768) over the gpt2 text
vocabulary + 3 x 4096 audio codes (62,554 ids); 40 shards are roughly 2,000 hours of speech, ~0.6 B tokens.
On one H100 (bf16, compiled) expect roughly 250-350 k tokens/s, so 20,000 steps of 64 x 1024 tokens
(1.3 B tokens, about two epochs) take about 1.5 hours; validation loss on audio targets should fall
well below the uniform ln 4096 = 8.32 (a guess: 4.5-5.5 nats).
"""
dataset = 'mls'
out_dir = 'out/mls_small'
n_layer = 12
n_head = 12
n_embd = 768
block_size = 1024
batch_size = 32
grad_accum = 2
max_iters = 20000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 500
weight_decay = 0.1
eval_interval = 1000
eval_examples = 512
log_interval = 50
ckpt_interval = 1000
compile = True
