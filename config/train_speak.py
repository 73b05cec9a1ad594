"""
Speaking, the longer CPU run: the tiny corpus with 12,000 training sentences spoken by a natural voice (hibari), word
by word, through the stand-in codec with 256 codes per level (a 1,034-id vocabulary); a 6-layer model of width 192
(2.7 M non-embedding parameters), 50 minutes of training on 2 CPU cores.

    python prepare.py --source=tiny --name=hibari_w256_12k --voices=hibari --codec=mel --mel_codes=256 --tts_words=1.0 --n_train=12000
    python train.py config/train_speak.py
    python eval.py --ckpt=out/speak/ckpt.pt --data=data/hibari_w256_12k --n=60 --whisper_n=60 --tts_temperature=0.1
    python sample.py --ckpt=out/speak/ckpt.pt --text="Please bring five silver balls to the office." --temperature=0.1

Why these choices, and what they measured: docs/results.md, It speaks. Word by word (prepare.py --tts_words): each
word's text comes right before its audio, so the model only has to say the word it has just read, and
sample.WordGrammar feeds it the words in order at generation. 256 codes per level keep the natural voice
intelligible through the codec (Whisper CER 0.06 on its resynthesis), are far easier to predict than 4096, and shrink
the output layer (9,439 tokens/s in training against 7,910 with 12,554 ids). 12,000 sentences rather than 4,000:
more sentences, fewer repeats. Six layers rather than four: four read 12 % more tokens in the 50 minutes to the same
loss, and heard and spoke worse (Whisper CER 0.22).

With Muon for the blocks' matrices at 3.7e-3 (1.6x AdamW's 2.3e-3, the demo's ratio), on 2 AVX2-only cores in
float32: 2,950 steps in the 50 minutes (4,048 tokens/s), Whisper CER 0.16 on its TTS at temperature 0.1 (the codec's
resynthesis: 0.07; 2.3x), ASR CER 0.03, duration ratio 1.00. With AdamW at 2.3e-3, measured on 2 AVX-512 cores in
bf16 (docs/results.md, It speaks), before 8e8e3cc made a step of this size ~15 % faster: the time limit stops it at
step 6,061-6,862 (~0.44-0.50 s a step as the machine's speed varies, evaluations included; the learning rate is
then near its floor); on 60 held-out sentences Whisper tiny.en hears its TTS at CER 0.17 at temperature 0.1 (the
codec's resynthesis: 0.06), its ASR CER is 0.05. The whole hour (58 minutes, 6,506 steps) spoke no better: 0.18.
"""
dataset = 'hibari_w256_12k'
out_dir = 'out/speak'
n_layer = 6
n_head = 4
n_embd = 192
block_size = 512
batch_size = 8
grad_accum = 1
max_iters = 8000         # at ~0.44 s a step (AVX-512; ~1 s on AVX2) the time limit comes first, where the clock ends the decay
optimizer = 'muon'       # for the blocks' matrices, AdamW for the embedding (model.configure_optimizers)
learning_rate = 3.7e-3   # 1.6x AdamW's 2.3e-3 (2e-3 at width 256, scaled by (256 / n_embd) ** 0.5), as in train_tiny.py
min_lr = 3.7e-4
warmup_iters = 100
mix_asr = 3.0            # hearing is slow to appear (config/train_tiny.py); the ASR CER counts too
eval_interval = 1000
eval_examples = 96
log_interval = 100
ckpt_interval = 500
time_limit = 3000.0      # 50 minutes of training: the run stops cleanly there, with its checkpoint
schedule_clock = True    # ... with its learning rate decayed, on a slower machine too (train.py)
compile = False
