"""
Spoken questions with a trained ear: the speaking model (config/train_speak.py, 50 minutes, held-out ASR CER 0.03)
fine-tuned for 30 minutes on the QA world. From scratch, 30 minutes do not teach the ear to hear 60 new names in
recordings it never heard, and spoken questions about the text-only facts fail (config/train_qa.py: transfer gap
0.81 at best). Starting from a model that already hears, they carry over. The world is prepared with the speaking
model's codec, so that its codes mean what the model learned (train.py checks the codec, the vocabulary and the
model's shape), and eval.py checks that the speaking model's data spoke none of the held-out facts either:

    python prepare.py --source=tiny --name=hibari_w256_12k --voices=hibari --codec=mel --mel_codes=256 --tts_words=1.0 --n_train=12000
    python train.py config/train_speak.py                                       # out/speak/ckpt.pt, 50 minutes
    python prepare.py --source=qa --name=qa60f --voices=hibari --codec=mel:data/hibari_w256_12k/codec.npz --mel_codes=256 --tts_words=1.0 --qa_people=60 --qa_spoken=2 --qa_greetings=12 --qa_thought=1.0 --qa_unknown=6 --qa_sentences=40 --n_train=2000
    python train.py config/train_qa.py config/finetune_qa.py                    # 30 minutes
    python eval.py --ckpt=out/qa_ft/ckpt.pt --data=data/qa60f --tts_temperature=0.1 --n=60
    python sample.py --ckpt=out/qa_ft/ckpt.pt --mode=chat --turn="Where does Jill live?" --speak=True --temperature=0.1

The rest is config/train_qa.py's, the learning rate included: the run warms up to it again while the facts are
learned, and the speech holds (Whisper TTS CER 0.17 before, on 60 held-out corpus sentences; 0.16 after, on 30 of
the world's; with the codebooks fitted before, 0.19 and 0.22).
Measured on 2 AVX-512 cores in bf16 (docs/results.md, Spoken questions): 3,503 steps in 30 minutes; text questions
about the text-only facts 1.00, spoken questions about the same facts 0.83 (transfer gap 0.17; 0.22 with the
person's name right too), spoken questions about facts trained in both modalities 1.00; Whisper hears the key word in
0.17 / 0.42 of its spoken answers, where the world's own voice through the codec reaches 0.82 / 0.75 (the ceiling
eval.py prints beside them). With the codebooks fitted before: 3,817 steps, gap 0.17, spoken answers 0.07 / 0.55-0.57.
Before the world's lines were spoken word by word too (prepare.py said()), 3,665 and 2,935 steps gave gaps of 0.18
and 0.25.
"""
init_from = 'out/speak/ckpt.pt'
dataset = 'qa60f'
out_dir = 'out/qa_ft'
max_iters = 4800         # ~0.49 s a step: the 30-minute limit comes first, and the clock ends the decay there
