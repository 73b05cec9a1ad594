"""
The tiny demo: the espeak-ng corpus (python prepare.py --source=tiny --name=tiny), a ~6 M-parameter model
(3.2 M non-embedding), on a 2-core CPU.

    python train.py config/train_tiny.py

Takes 9.5 minutes on 2 AVX2 CPU cores in fp32 (about 1,600 tokens/s; the 540 s time limit stops it near step
200 of 230). Measured on this config (stand-in codec, demo.sh): final validation loss on the target spans 6.65
(audio targets 8.11 nats per code against the uniform ln 4096 = 8.32; ASR transcripts 1.76 nats per byte;
plain text 1.82). Faster CPUs reach the later steps of the schedule and lower losses.
"""
dataset = 'tiny'
out_dir = 'out/tiny'
n_layer = 4
n_head = 4
n_embd = 256
block_size = 512
batch_size = 8
grad_accum = 1
max_iters = 230          # ~2.3 s per step on 2 AVX2 cores in fp32: the cosine schedule ends inside the 9 minutes
learning_rate = 2e-3
min_lr = 2e-4
warmup_iters = 20
eval_interval = 115
eval_examples = 96
log_interval = 25
time_limit = 540.0
compile = False   # on 2 cores compiling takes one to several minutes of the 9, more than it saves in so short a run
