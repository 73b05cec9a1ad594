"""
The text-only comparison for the tiny demo: the same model, steps and batch as config/train_tiny.py, trained
on the same corpus' transcripts as plain text only. The gap in held-out text loss between the two runs is what
learning speech costs the text side at this size and compute.

    python prepare.py --source=tiny --name=tiny_text --tts=0 --tts_desc=0 --asr=0 --text=1
    python train.py config/train_tiny_textonly.py
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --baseline=out/tiny_text/ckpt.pt

prepare.py builds the same sentences and held-out split as data/tiny (same seed and sizes) with the same
vocabulary, so eval.py scores both checkpoints on the same held-out transcripts (it still synthesizes and
encodes the audio, a minute or two, and leaves it unused). Training takes about as long as
train_tiny.py (same windows per step; time_limit stops both at the same wall time). Every value but dataset
and out_dir equals config/train_tiny.py (tests/test_eval.py checks it).
"""
dataset = 'tiny_text'
out_dir = 'out/tiny_text'
n_layer = 4
n_head = 4
n_embd = 128             # a 2.4 M-parameter model: at this compute a smaller model learns more per second than a wider one
block_size = 512
batch_size = 8
grad_accum = 1
max_iters = 400          # ~1.7 s per step on 2 AVX2 cores in fp32: the time limit stops it near step 314
learning_rate = 2.8e-3   # 2e-3 at width 256, scaled by (256 / n_embd) ** 0.5 as in config/sweep_tiny.py
min_lr = 2.8e-4
warmup_iters = 20
mix_asr = 2.0            # ASR examples drawn twice as often: hearing is the slowest skill to appear
eval_interval = 115
eval_examples = 96
log_interval = 25
time_limit = 540.0
compile = False   # on 2 cores compiling takes one to several minutes of the 9, more than it saves in so short a run
