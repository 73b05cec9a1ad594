#!/usr/bin/env bash
# The tiny end-to-end demo, on a 2-core CPU in 15 minutes, no GPU, no root: install, speak the tiny corpus with a
# natural voice (hibari, inside its pip wheel) and tokenize it, train config/train_tiny.py, speak a held-out sentence
# and transcribe another, evaluate (with Whisper as an independent ear), and print a summary. Training gets what the
# other steps leave of the 15 minutes (DEMO_MINUTES), so slower cores train fewer steps, and hear and speak worse.
# Pretrained SNAC is not used here: the corpus goes through the offline stand-in codec (a log-mel residual VQ in
# SNAC's token layout, 256 codes per level), and every output says so.
set -euo pipefail
cd "$(dirname "$0")"
export OPENBLAS_NUM_THREADS=1   # the stand-in codec's small matmuls run faster single-threaded (bench_data.py --what=prepare)
start=$(date +%s)
minutes=${DEMO_MINUTES:-15}
[[ $minutes =~ ^[0-9]+$ ]] || { echo "DEMO_MINUTES=$minutes: give whole minutes, e.g. DEMO_MINUTES=20" >&2; exit 2; }

echo "== install"
python3 -m pip install -q torch==2.13.0   # the CPU build; a bare `torch` would pull a multi-GB CUDA build
python3 -m pip install -q -r requirements.txt

echo "== 1/5 speak and tokenize the tiny corpus (data/tiny)"
corpus_start=$(date +%s)
python3 prepare.py --source=tiny --name=tiny --voices=hibari --codec=mel --mel_codes=256 --tts_words=1.0
corpus_seconds=$(( $(date +%s) - corpus_start ))

# Training gets what is left of the demo's minutes once the steps after it are paid for. Those (sampling,
# evaluation with Whisper, the summary) took up to 100 s plus about as long as the corpus on both CPUs measured
# (docs/results.md, Demo): about 560 s of training on AVX-512 cores, 430-500 s on AVX2-only ones (half as fast).
train_seconds=$(( minutes * 60 - ($(date +%s) - start) - 100 - corpus_seconds ))
train_seconds=$(( train_seconds < 120 ? 120 : train_seconds ))

echo "== 2/5 train config/train_tiny.py (out/tiny) for ${train_seconds} s: what ${minutes} minutes leave, 120 s at least"
python3 train.py config/train_tiny.py --time_limit=$train_seconds

echo "== 3/5 speak a held-out sentence, then transcribe another (a held-out speaker's, when the corpus has one)"
demo=out/tiny/demo
mkdir -p "$demo"
python3 - "$demo" <<'PY'
import json, sys
from codec import write_wav
from tinyspeech import synthesize
val = [json.loads(l) for l in open('data/tiny/utterances.jsonl') if '"split": "val"' in l]
tts_u = val[0]
asr_u = next((u for u in val if u['speaker_heldout']), val[1])
write_wav(f'{sys.argv[1]}/heard.wav', synthesize(asr_u['text'], asr_u['voice'], asr_u['rate'], asr_u['pitch']))
json.dump({'tts_text': tts_u['text'], 'tts_desc': tts_u['desc'], 'asr_text': asr_u['text'],
           'asr_speaker': 'a held-out speaker' if asr_u['speaker_heldout'] else asr_u['speaker']},
          open(f'{sys.argv[1]}/prompts.json', 'w'))
PY
tts_text=$(python3 -c "import json; print(json.load(open('$demo/prompts.json'))['tts_text'])")
tts_desc=$(python3 -c "import json; print(json.load(open('$demo/prompts.json'))['tts_desc'])")
python3 sample.py --ckpt=out/tiny/ckpt.pt --mode=tts --text="$tts_text" --desc="$tts_desc" --temperature=0.1 --seed=1 --out="$demo"
python3 sample.py --ckpt=out/tiny/ckpt.pt --mode=asr --wav="$demo/heard.wav" --out="$demo"

echo "== 4/5 evaluate on 60 held-out sentences (and what Whisper hears, when it is installed)"
python3 eval.py --ckpt=out/tiny/ckpt.pt --data=data/tiny --n=60 --whisper_n=60 --tts_temperature=0.1 --probe=False  # the probe: ~10 s on what the codes carry, not on the model

echo "== 5/5 summary"
python3 - "$demo" "$start" <<'PY'
import json, sys, time
import eval as evaluation  # for its Whisper: an independent ear, when one is on this machine
from codec import load_audio
demo, start = sys.argv[1], int(sys.argv[2])
prompts = json.load(open(f'{demo}/prompts.json'))
asr = json.load(open(f'{demo}/asr.json'))
report = json.load(open('out/tiny/eval.json'))
print(f"TTS  text: {prompts['tts_text']!r} ({prompts['tts_desc']})  ->  {demo}/tts_000.wav")
transcribe, ear = evaluation.whisper_transcriber('auto', 'cpu')
if transcribe is None:
    print(f"     Whisper: skipped ({ear})")
else:
    print(f"     Whisper ({ear.split(' (')[0]}) heard: {transcribe(load_audio(f'{demo}/tts_000.wav')).strip()!r}")
    w = report['tts']['whisper']
    print(f"     on {w['n']} held-out sentences Whisper's CER is {w['all']['cer']:.2f} (the codec's own resynthesis "
          f"{w['reference_audio']['cer']:.2f}, speech of another sentence {w['gibberish']['cer']:.2f})")
print(f"ASR  {prompts['asr_speaker']} said {prompts['asr_text']!r}; the model heard {asr['results'][0]['transcript']!r}")
print(f"     on {report['asr']['all']['n']} held-out sentences its CER is {report['asr']['all']['cer']:.2f}")
print("full evaluation: out/tiny/eval.json, wavs to listen to: out/tiny/eval_samples/, training log: out/tiny/log.txt")
print(f"demo wall time: {(time.time() - start) / 60:.1f} min")
PY
