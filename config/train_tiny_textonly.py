"""
The text-only comparison for the tiny demo: config/train_tiny.py's model, steps and batch, trained on the same
corpus' transcripts as plain text only. The gap in held-out text loss between the two runs is what learning
speech costs the text side at this size and compute. It only names its data, on top of the demo's config:

    python prepare.py --source=tiny --name=tiny_text --voices=hibari --codec=mel --mel_codes=256 --tts=0 --tts_desc=0 --asr=0 --text=1
    python train.py config/train_tiny.py config/train_tiny_textonly.py
    python eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --baseline=out/tiny_text/ckpt.pt

prepare.py builds the same sentences and held-out split as data/tiny (same seed and sizes) with the same
vocabulary (the same --mel_codes as demo.sh), so eval.py scores both checkpoints on the same held-out transcripts (it still synthesizes and
encodes the audio, a minute or two, and leaves it unused). Training takes about as long as train_tiny.py
(same windows per step; time_limit stops both at the same wall time). Measured so far on an earlier demo config
only: 0.51 bits per byte text-only against 1.75 joint (docs/results.md, Text-only comparison).
"""
dataset = 'tiny_text'
out_dir = 'out/tiny_text'
