#!/usr/bin/env bash
# The tiny end-to-end demo, on a 2-core CPU in about 12 minutes plus 1 of install, no GPU, no root:
# install, synthesize and tokenize the tiny espeak-ng corpus, train config/train_tiny.py, speak and transcribe
# a held-out sentence, evaluate, and print a summary. Pretrained SNAC is used when the Hugging Face hub is
# reachable; otherwise the offline stand-in codec (a log-mel residual VQ in SNAC's token layout), and every
# output says which.
set -euo pipefail
cd "$(dirname "$0")"
export OPENBLAS_NUM_THREADS=1   # the stand-in codec's small matmuls run faster single-threaded (bench_data.py --what=prepare)
start=$(date +%s)

echo "== install"
python3 -m pip install -q torch==2.13.0   # the CPU build; a bare `torch` would pull a multi-GB CUDA build
python3 -m pip install -q -r requirements.txt

echo "== 1/5 synthesize and tokenize the tiny corpus (data/tiny)"
python3 prepare.py --source=tiny --name=tiny

echo "== 2/5 train config/train_tiny.py (out/tiny)"
python3 train.py config/train_tiny.py

echo "== 3/5 speak a held-out sentence, then transcribe a held-out speaker saying another one"
demo=out/tiny/demo
mkdir -p "$demo"
python3 - "$demo" <<'PY'
import json, sys
from codec import write_wav
from tinyspeech import synthesize
val = [json.loads(l) for l in open('data/tiny/utterances.jsonl') if '"split": "val"' in l]
tts_u = val[0]
asr_u = next(u for u in val if u['speaker_heldout'])
write_wav(f'{sys.argv[1]}/heldout_speaker.wav', synthesize(asr_u['text'], asr_u['voice'], asr_u['rate'], asr_u['pitch']))
json.dump({'tts_text': tts_u['text'], 'tts_desc': tts_u['desc'], 'asr_text': asr_u['text']}, open(f'{sys.argv[1]}/prompts.json', 'w'))
PY
tts_text=$(python3 -c "import json; print(json.load(open('$demo/prompts.json'))['tts_text'])")
tts_desc=$(python3 -c "import json; print(json.load(open('$demo/prompts.json'))['tts_desc'])")
python3 sample.py --ckpt=out/tiny/ckpt.pt --mode=tts --text="$tts_text" --desc="$tts_desc" --temperature=0.8 --top_k=100 --seed=1 --min_frames=12 --out="$demo"  # >= 1 s: a tiny model may stop early
python3 sample.py --ckpt=out/tiny/ckpt.pt --mode=asr --wav="$demo/heldout_speaker.wav" --out="$demo"

echo "== 4/5 evaluate on held-out sentences and speakers (and what Whisper hears, when it is installed)"
python3 eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --n=60

echo "== 5/5 summary"
python3 - "$demo" "$start" <<'PY'
import json, sys, time
import eval as evaluation  # for its Whisper: an independent ear, when one is on this machine
from codec import load_audio
demo, start = sys.argv[1], int(sys.argv[2])
prompts = json.load(open(f'{demo}/prompts.json'))
asr = json.load(open(f'{demo}/asr.json'))
print(f"TTS  text: {prompts['tts_text']!r} ({prompts['tts_desc']})  ->  {demo}/tts_000.wav")
transcribe, ear = evaluation.whisper_transcriber('auto', 'cpu')
if transcribe is None:
    print(f"     Whisper: skipped ({ear})")
else:
    print(f"     Whisper ({ear.split(' (')[0]}) heard: {transcribe(load_audio(f'{demo}/tts_000.wav')).strip()!r}")
print(f"ASR  a held-out speaker said {prompts['asr_text']!r}; the model heard {asr['results'][0]['transcript']!r}")
print("full evaluation: out/tiny/eval.json, wavs to listen to: out/tiny/eval_samples/, training log: out/tiny/log.txt")
print(f"demo wall time: {(time.time() - start) / 60:.1f} min")
PY
