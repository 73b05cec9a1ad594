"""
The tiny demo: the espeak-ng corpus (python prepare.py --source=tiny --name=tiny), a ~6 M-parameter model
(3.2 M non-embedding), on a 2-core CPU.

    python train.py config/train_tiny.py

Takes about 8 minutes on 2 CPU cores (bf16 autocast). Expected (stand-in codec, measured on this config):
final validation loss on the target spans about VAL_LOSS (audio targets about AUDIO_LOSS nats against the
uniform ln 4096 = 8.32; ASR transcripts about ASR_LOSS nats per byte).
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
