"""
Streaming text to speech: generate with the KV cache, decode each window of frames as soon as it is final,
and play the samples while the rest is still being generated.

    python stream.py --ckpt=out/tiny/ckpt.pt --text="hello there"                  # speaker, or a wav if there is none
    python stream.py --ckpt=out/tiny/ckpt.pt --text="hello there" --out=out/stream.wav   # always a wav
    python stream.py --ckpt=out/tiny/ckpt.pt --text="hello there" --compile_lm=True --compile_codec=True --dtype=bfloat16
    python stream.py --ckpt=out/qa/ckpt.pt --mode=chat                              # talk: type, give a wav, or speak
    python stream.py --ckpt=out/qa/ckpt.pt --mode=chat --question=question.wav --out=out/answer.wav

The model emits 7 tokens per 85 ms frame. Each finished frame goes to codec.StreamingDecoder, which decodes
a window of frames with context on both sides (codec.LEFT_CONTEXT / RIGHT_CONTEXT for SNAC) and returns
the samples that no later frame can change, so the streamed audio equals codec.decode() of the same tokens
(to float rounding for SNAC with its noise off; exactly for the stand-in MelCodec). The samples go to a
sounddevice callback stream through a small jitter buffer; without PortAudio or an output device they go to a
wav file, and the underruns a real-time speaker would have had are still counted (a simulated playhead).

Reported: time to first audio (request to first samples ready), generation and decode time, real-time
factor ((generation + decode) / audio duration), tokens/s, buffer underruns.
"""
import collections
import os
import time

# numpy's OpenBLAS runs the stand-in codec's small matrix products faster on one thread, and its idle threads
# spin for a while after a larger one, stealing the cores from the LM's next tokens (streaming's time to first
# audio went from ~75 to ~110 ms that way). Set before numpy is first imported; export it to change it.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np
import torch

from codec import StreamingDecoder, write_wav
from common import load_checkpoint, speaks_word_by_word, start
from configurator import apply_overrides, run
from generate import check_sampling, compile_decoding, generate_tokens
from sample import FrameGrammar, WordGrammar, chat, check_prompt_ids, speaking_prefix, user_turn
from tokenizer import FRAME_LEN, FRAME_SECONDS, SAMPLE_RATE

# -----------------------------------------------------------------------------
# the generator: tokens in, sample chunks out


def stream(model, tok, codec, text, desc=None, max_seconds=10.0, temperature=1.0, top_k=None, top_p=None,
           seed=None, min_frames=1, left=None, right=None, stats=None, words=False, max_word_seconds=2.0, prefix=None):
    """Yield float32 sample chunks (24 kHz mono) of the speech for `text` as they become final.

    Generation and decoding interleave in this one generator (no threads): after each 7th audio token the
    frame goes to the streaming decoder, which answers with the samples it can now finalize (often none:
    it waits for right context, then emits 1 frame, later as many as before, up to 16 at a time). The last
    chunk is the decoder's tail. words: speak word by word (sample.WordGrammar), for a model trained so; the forced
    text between the words' audio never reaches the decoder. prefix: ids before the prompt (chat: the conversation,
    so that the text is spoken as the assistant's answer).
    stats (a dict, optional) is filled in at the end: see the keys below; the generator also returns it."""
    stats = {} if stats is None else stats
    t_request = time.perf_counter()
    if not text or not text.strip():
        raise ValueError("the text is empty: there is nothing to say")
    prompt = list(prefix if prefix is not None else []) + \
        (tok.tts_words_prompt(text.split(), desc) if words else tok.tts_prompt(text, desc)).tolist()
    block = model.config.block_size
    check_prompt_ids(tok, prompt, block, 'text')
    frames = min(max(1, int(round(max_seconds / FRAME_SECONDS))), (block - len(prompt) - 1) // FRAME_LEN)
    if frames < max(min_frames, 1):
        raise ValueError(f"the prompt is {len(prompt)} tokens; the model's context of {block} leaves no room for audio")
    device = model.wte.weight.device
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    decoder = StreamingDecoder(codec, left, right)
    n_new = frames * FRAME_LEN + 1
    if words:
        n_new = min(block - len(prompt), n_new + sum(len(tok.encode_text(' ' + w)) + 2 for w in text.split()[1:]))
        grammar = WordGrammar(tok, [text.split()], min_frames, frames, max(1, round(max_word_seconds / FRAME_SECONDS)))
    else:
        grammar = FrameGrammar(tok, 'audio', min_frames, frames, device)
    tokens = generate_tokens(model, idx, n_new, temperature=temperature, top_k=top_k, top_p=top_p,
                             seed=seed, logits_hook=grammar, stop_token=tok.eos)
    generated, frame = [], []
    gen_s = decode_s = 0.0
    n_samples = n_chunks = 0
    t_first = None
    while True:
        t = time.perf_counter()
        nxt = next(tokens, None)
        gen_s += time.perf_counter() - t
        if nxt is None or int(nxt) == tok.eos:
            break
        if not tok.is_audio(int(nxt)):  # a word's forced text, between its neighbours' audio
            continue
        generated.append(int(nxt))
        frame.append(int(nxt))
        if len(frame) < FRAME_LEN:
            continue
        t = time.perf_counter()
        samples = decoder.push(tok.audio_codes(frame))  # (k * FRAME_SAMPLES,) float32, k >= 0
        decode_s += time.perf_counter() - t
        frame = []
        if len(samples):
            t_first = t_first or time.perf_counter()
            n_samples, n_chunks = n_samples + len(samples), n_chunks + 1
            yield samples
    t = time.perf_counter()
    tail = decoder.flush()  # the frames that waited for right context that never came
    decode_s += time.perf_counter() - t
    if len(tail):
        t_first = t_first or time.perf_counter()
        n_samples, n_chunks = n_samples + len(tail), n_chunks + 1
        yield tail
    audio_s = n_samples / SAMPLE_RATE
    stats.update(
        tokens=generated,                    # the audio ids, without <eos>
        frames=len(generated) // FRAME_LEN,
        audio_s=audio_s,
        chunks=n_chunks,
        time_to_first_audio_s=(t_first or time.perf_counter()) - t_request,
        generate_s=gen_s,                    # the LM: prefill, every decode step and the grammar hook
        decode_s=decode_s,                   # the codec: every window and the tail
        rtf=(gen_s + decode_s) / max(audio_s, 1e-9),
        tokens_per_s=(len(generated) + 1) / max(gen_s, 1e-9),
        total_s=time.perf_counter() - t_request,
    )
    return stats

# -----------------------------------------------------------------------------
# where the samples go: a speaker (sounddevice callback stream) or a wav file


class JitterBuffer:
    """Chunks in (write, any thread), fixed-size blocks out (read_into, the audio callback). Reading starts once
    `prebuffer` samples are queued; a read that finds too few samples mid-stream is an underrun and is padded
    with silence. deque append/popleft are atomic, so the two sides need no lock."""

    def __init__(self, prebuffer=0):
        self.queue = collections.deque()
        self.current, self.offset = np.zeros(0, np.float32), 0
        self.prebuffer, self.queued, self.started = int(prebuffer), 0, False
        self.finished, self.underruns = False, 0  # finished: no more writes will come

    def write(self, samples):
        self.queue.append(np.asarray(samples, dtype=np.float32).reshape(-1))
        self.queued += len(samples)
        self.started = self.started or self.queued >= self.prebuffer

    def read_into(self, out):
        """Fill out (n,) with the next samples; returns how many were real (the rest is silence)."""
        n, filled = len(out), 0
        if self.started or self.finished:
            while filled < n:
                if self.offset == len(self.current):
                    if not self.queue:
                        break
                    self.current, self.offset = self.queue.popleft(), 0
                take = min(n - filled, len(self.current) - self.offset)
                out[filled:filled + take] = self.current[self.offset:self.offset + take]
                filled, self.offset = filled + take, self.offset + take
        out[filled:] = 0
        if filled < n and self.started and not self.finished:
            self.underruns += 1
        return filled

    def drained(self):
        return self.finished and not self.queue and self.offset == len(self.current)


class Speaker:
    """A sounddevice OutputStream whose callback reads from a JitterBuffer. Raises ImportError/OSError where
    sounddevice or PortAudio is missing, RuntimeError where there is no output device."""

    def __init__(self, prebuffer_s=0.0, blocksize=512):
        import sounddevice as sd  # here, not at the top: without PortAudio importing it raises OSError
        try:
            sd.query_devices(kind='output')
        except Exception as e:
            raise RuntimeError(f"no audio output device ({e})") from None
        self.buffer = JitterBuffer(int(prebuffer_s * SAMPLE_RATE))
        self.stream = sd.OutputStream(samplerate=SAMPLE_RATE, channels=1, dtype='float32', blocksize=blocksize,
                                      callback=lambda outdata, n, time_info, status: self.buffer.read_into(outdata[:, 0]))
        self.stream.start()  # the callback plays silence until the buffer has its prebuffer

    @property
    def underruns(self):
        return self.buffer.underruns

    def write(self, samples):
        self.buffer.write(samples)

    def close(self):
        self.buffer.finished = True
        deadline = time.perf_counter() + self.buffer.queued / SAMPLE_RATE + 2.0
        while not self.buffer.drained() and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(self.stream.latency)  # the last block is still in the device's buffer
        self.stream.stop()
        self.stream.close()


class SimulatedPlayhead:
    """What a real-time speaker would have done with the chunks' arrival times: it starts when `prebuffer_s`
    is queued, plays at 24 kHz, and stalls (an underrun) whenever it catches up with the samples delivered."""

    def __init__(self, prebuffer_s=0.0):
        self.prebuffer = int(prebuffer_s * SAMPLE_RATE)
        self.delivered, self.start, self.stalled, self.underruns = 0, None, 0.0, 0

    def write(self, samples, now=None):
        now = time.perf_counter() if now is None else now
        if self.start is not None:
            played = (now - self.start - self.stalled) * SAMPLE_RATE
            if played > self.delivered:  # the speaker ran dry before this chunk arrived
                self.underruns += 1
                self.stalled += (played - self.delivered) / SAMPLE_RATE
        self.delivered += len(samples)
        if self.start is None and self.delivered >= self.prebuffer:
            self.start = now


def open_speaker(prebuffer_s):
    """A Speaker, or (None, reason) where audio output is impossible."""
    try:
        return Speaker(prebuffer_s), None
    except (ImportError, OSError, RuntimeError) as e:
        return None, f"{type(e).__name__}: {e}"

# -----------------------------------------------------------------------------
# warm-up and an optionally compiled SNAC decoder


def compile_codec(codec):
    """torch.compile SNAC's decoder (each window shape compiles once, ~10 s on 2 cores). No-op for MelCodec."""
    if codec.kind == 'snac' and not hasattr(codec.model.decoder, '_orig_mod'):  # not compiled yet
        codec.model.decoder = torch.compile(codec.model.decoder)
    return codec


def warm_up(model, tok, codec, runs=1, seconds=1.0):
    """Run short streams so that first-call costs (allocations, oneDNN kernel choice, compilation of every
    window shape) are paid before anything is timed."""
    for _ in range(runs):
        for _ in stream(model, tok, codec, 'warm up', max_seconds=seconds, min_frames=int(seconds / FRAME_SECONDS),
                        seed=0):
            pass

# -----------------------------------------------------------------------------
# spoken chat: hear or read a question, write the answer, speak it as it is generated


def record_microphone(seconds):
    """seconds of mono float32 audio at 24 kHz from the default input device."""
    import sounddevice as sd  # here: where PortAudio is missing the import itself fails
    audio = sd.rec(int(seconds * SAMPLE_RATE), samplerate=SAMPLE_RATE, channels=1, dtype='float32')
    sd.wait()
    return audio[:, 0]


def next_question(cfg, asked):
    """The next question: --question once, else a line typed at the prompt (a question, a .wav path, or nothing
    for the microphone); None to stop."""
    if cfg['question']:
        return cfg['question'] if asked == 0 else None
    try:
        line = input("you (a question, a .wav file, Enter to speak, q to quit): ").strip()
    except EOFError:
        return None
    if line.lower() in ('q', 'quit', 'exit'):
        return None
    if line:
        return line
    try:
        print(f"listening for {cfg['mic_seconds']:g} s ...")
        return record_microphone(cfg['mic_seconds'])
    except (ImportError, OSError, RuntimeError) as e:  # no PortAudio, no input device
        print(f"no microphone ({type(e).__name__}: {e}); type the question or give a .wav file")
        return ''


def chat_loop(model, tok, codec, cfg, words, speaker, out_path):
    """A spoken conversation: every question and answer stays in the context (the oldest turns are dropped when it is
    full). Each answer is written (greedy), then spoken while it is generated: to the speaker, or to
    <out_path stem>_<n>.wav. Returns the turns."""
    conversation, asked = [], 0
    while True:
        question = next_question(cfg, asked)
        if question is None:
            return conversation
        if isinstance(question, str) and not question:
            continue
        asked += 1
        try:
            conversation.append(user_turn(tok, codec, question, f"question {asked}"))
        except ValueError as e:
            if cfg['question']:
                raise
            print(f"error: {e}")  # a bad file or an empty recording: ask again
            continue
        answer = chat(model, tok, [conversation], codec, max_new_tokens=cfg['max_new_tokens'], temperature=0.0)[0]
        print(f"assistant: {answer['text']}")
        conversation.append(answer['turn'])
        if not cfg['speak'] or not answer['text']:
            continue
        try:
            prefix = speaking_prefix(tok, conversation[:-1], answer, model.config.block_size, 'the answer')
        except ValueError as e:
            print(f"  not spoken: {e}")
            continue
        stats, chunks = {}, []
        for chunk in stream(model, tok, codec, answer['text'], None, cfg['max_seconds'], cfg['temperature'],
                            cfg['top_k'], cfg['top_p'], cfg['seed'], stats=stats, words=words, prefix=prefix):
            chunks.append(chunk)
            if speaker is not None:
                speaker.write(chunk)
        conversation[-1] = ('assistant', answer['turn'][1] + [('audio', tok.audio_codes(stats['tokens']))])
        where = 'the speaker'
        if speaker is None:
            where = f"{os.path.splitext(out_path)[0]}_{asked}.wav"
            write_wav(where, np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
        print(f"  spoke {stats['audio_s']:.2f} s to {where}, first audio after "
              f"{stats['time_to_first_audio_s'] * 1e3:.0f} ms")

# -----------------------------------------------------------------------------
# command line

DEFAULTS = dict(
    ckpt='out/tiny/ckpt.pt',   # checkpoint written by train.py
    mode='tts',                # tts: say --text | chat: answer questions (--question, or typed / spoken at the prompt)
    text='',                   # what to say
    question='',               # chat: one question, text or a .wav file (empty: ask at the prompt, in a loop)
    speak=True,                # chat: speak the answers (else only write them)
    mic_seconds=4.0,           # chat: how long the microphone listens after Enter
    max_new_tokens=100,        # chat: the longest written answer
    desc='',                   # optional speaker/style description
    out='',                    # a wav path: write there instead of playing
    fallback_out='out/stream.wav',  # where the audio goes when there is no speaker
    max_seconds=10.0,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=1337,
    prebuffer_ms=0,            # jitter buffer: audio queued before playback starts
    left=None,                 # decoder context frames (None: the codec's own)
    right=None,
    device='auto',
    dtype='float32',           # float32 | bfloat16 (model weights)
    compile_codec=False,       # torch.compile SNAC's decoder (pays ~10 s per window shape at warm-up)
    compile_lm=False,          # torch.compile the LM's one-token step (generate.compile_decoding; ~12 s at warm-up)
    warmup=True,               # stream a short utterance first, so the figures are not first-call costs
    words=None,                # word by word (sample.WordGrammar); None: as the checkpoint's data (prepare.py --tts_words)
    threads=0,                 # torch threads (0: torch's default)
)


def main(argv):
    cfg = apply_overrides(DEFAULTS, argv)
    check_sampling(cfg['temperature'], cfg['top_k'], cfg['top_p'], ('--temperature', '--top_k', '--top_p'))
    device = start(cfg['device'], cfg['threads'])
    model, tok, codec, ckpt = load_checkpoint(cfg['ckpt'], device, cfg['dtype'])
    words = speaks_word_by_word(ckpt, cfg['words'])
    if cfg['compile_codec']:
        compile_codec(codec)
    if cfg['compile_lm']:
        compile_decoding(model)
    if cfg['warmup']:
        warm_up(model, tok, codec)
    speaker, reason = (None, None) if cfg['out'] else open_speaker(cfg['prebuffer_ms'] / 1000)
    out_path = cfg['out'] or cfg['fallback_out']
    if speaker is None and reason:
        print(f"no audio output ({reason}); writing the stream to {out_path} instead")
    if cfg['mode'] == 'chat':
        turns = chat_loop(model, tok, codec, cfg, words, speaker, out_path)
        if speaker is not None:
            speaker.close()
        return turns
    if cfg['mode'] != 'tts':
        raise ValueError(f"--mode={cfg['mode']}: choose tts or chat")
    playhead = SimulatedPlayhead(cfg['prebuffer_ms'] / 1000)
    stats, chunks = {}, []
    for chunk in stream(model, tok, codec, cfg['text'], cfg['desc'] or None, cfg['max_seconds'], cfg['temperature'],
                        cfg['top_k'], cfg['top_p'], cfg['seed'], left=cfg['left'], right=cfg['right'], stats=stats,
                        words=words):
        chunks.append(chunk)
        playhead.write(chunk)
        if speaker is not None:
            speaker.write(chunk)
    wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if speaker is not None:
        speaker.close()
        stats['underruns'] = speaker.underruns
    else:
        write_wav(out_path, wav)
        print(f"wrote {out_path}")
    stats['simulated_underruns'] = playhead.underruns
    print(f"{stats['frames']} frames = {stats['audio_s']:.2f} s of audio in {stats['chunks']} chunks | "
          f"time to first audio {stats['time_to_first_audio_s'] * 1e3:.0f} ms | generation {stats['generate_s']:.2f} s "
          f"({stats['tokens_per_s']:.0f} tokens/s), decode {stats['decode_s']:.2f} s | RTF {stats['rtf']:.2f} | "
          f"underruns {stats.get('underruns', '-')} (simulated speaker: {stats['simulated_underruns']})")
    return wav, stats


if __name__ == '__main__':
    run(main)
