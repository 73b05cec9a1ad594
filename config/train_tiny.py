"""
The tiny demo: the espeak-ng corpus (python prepare.py --source=tiny --name=tiny), a 2.4 M-parameter model
(0.79 M non-embedding), on a 2-core CPU.

    python train.py config/train_tiny.py

Takes 8.5 minutes on 2 AVX2 CPU cores in fp32 (about 6,200 tokens/s, ~0.44 s per step; the 600 s time limit
is a guard for slower machines). Measured on these values in a fresh clone (bash demo.sh): final validation
loss on the target spans 6.06 (audio targets 7.88 nats per code against the uniform ln 4096 = 8.32; ASR
transcripts 0.30 nats per byte; plain text 0.41); held-out ASR CER 0.47 against the 0.75 chance line
(docs/results.md, Demo; why batch 4 and ASR drawn 6x: What made it hear).
"""
dataset = 'tiny'
out_dir = 'out/tiny'
n_layer = 4
n_head = 4
n_embd = 128             # a 2.4 M-parameter model: at this compute a smaller model learns more per second than a wider one
block_size = 512
batch_size = 4           # small batches, many steps: at this budget 1150 steps of 4 heard better than 680 of 8 (CER 0.45 vs 0.49)
grad_accum = 1
max_iters = 1150         # ~0.45 s per step on 2 AVX2 cores in fp32, evals included ~0.5 s
learning_rate = 2.8e-3   # 2e-3 at width 256, scaled by (256 / n_embd) ** 0.5 as in config/sweep_tiny.py
min_lr = 2.8e-4
warmup_iters = 20
mix_asr = 6.0            # ASR examples drawn 6x as often: hearing is the slowest skill to appear (at 2x: CER 0.71)
eval_interval = 230
eval_examples = 96
log_interval = 50
time_limit = 600.0
compile = False   # on CPU compiling costs 15-25 s and gained nothing per step in fp32 (docs/results.md, Training throughput)
