"""stream.py: streamed audio equals the offline decode of the same tokens, the jitter buffer, the wav fallback."""
import sys
import threading
import time


import numpy as np
import pytest
import torch
from scipy.io import wavfile

import codec as codec_lib
import stream as stream_lib
from model import GPT, GPTConfig
from sample import decode_codes, tts
from stream import JitterBuffer, SimulatedPlayhead, stream
from tokenizer import FRAME_SAMPLES, SAMPLE_RATE, Tokenizer, unflatten


pytestmark = pytest.mark.usefixtures('one_thread')


def snr_db(ref, x):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref.astype(np.float64) - x) ** 2), 1e-30))


def test_stream_equals_offline_mel(loaded):
    """Same tokens as the offline tts() with the same seed, and exactly the same samples as codec.decode()."""
    model, tok, codec, _ = loaded
    stats = {}
    chunks = list(stream(model, tok, codec, 'hello there', max_seconds=1.2, min_frames=10, seed=3, stats=stats))
    offline_codes = tts(model, tok, ['hello there'], max_seconds=1.2, min_frames=10, seed=3)[0]
    np.testing.assert_array_equal(tok.audio_codes(stats['tokens']), offline_codes)
    streamed = np.concatenate(chunks)
    assert len(chunks) >= 3 and len(streamed) == stats['frames'] * FRAME_SAMPLES
    np.testing.assert_array_equal(streamed, decode_codes(codec, offline_codes))
    assert 0 < stats['time_to_first_audio_s'] <= stats['total_s'] and stats['rtf'] > 0
    assert stats['audio_s'] == pytest.approx(stats['frames'] * FRAME_SAMPLES / SAMPLE_RATE)


def test_stream_equals_offline_snac(tmp_path):
    """A random-weight SNAC (the real architecture) with its noise off: a random model's tokens streamed
    frame by frame against one codec.decode() of all of them. The 3/3-frame windows differ from the
    one-shot decode only by float rounding (124 dB SNR measured, docs/results.md, Codecs); asserted: > 90 dB."""
    folder = codec_lib.make_random_snac(str(tmp_path / 'snac'), seed=0)
    codec = codec_lib.SnacCodec(folder, noise=False)
    tok = Tokenizer('byte', 'level')
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=32)).eval()
    stats = {}
    streamed = np.concatenate(list(stream(model, tok, codec, 'hi', max_seconds=1.0, min_frames=12, seed=0, stats=stats)))
    offline = codec.decode(unflatten(tok.audio_codes(stats['tokens'])))
    assert stats['frames'] == 12 and len(streamed) == len(offline) == 12 * FRAME_SAMPLES
    assert snr_db(offline, streamed) > 90
    assert np.abs(streamed[-FRAME_SAMPLES:] - offline[-FRAME_SAMPLES:]).max() < 1e-4 * np.abs(offline).max()  # the tail


def test_empty_text_is_refused(loaded):
    model, tok, codec, _ = loaded
    with pytest.raises(ValueError, match='empty'):
        next(stream(model, tok, codec, '   '))


def test_jitter_buffer_order_prebuffer_and_underruns():
    buf = JitterBuffer(prebuffer=6)
    out = np.ones(4, np.float32)
    buf.write(np.arange(3, dtype=np.float32))
    assert buf.read_into(out) == 0 and not out.any() and buf.underruns == 0  # still prebuffering: not an underrun
    buf.write(np.arange(3, 8, dtype=np.float32))
    assert buf.read_into(out) == 4 and out.tolist() == [0, 1, 2, 3]  # across the chunk boundary
    assert buf.read_into(out) == 4 and out.tolist() == [4, 5, 6, 7]
    assert buf.read_into(out) == 0 and buf.underruns == 1  # dry mid-stream
    buf.write(np.array([9.0], np.float32))
    buf.finished = True
    assert buf.read_into(out) == 1 and out.tolist() == [9, 0, 0, 0] and buf.underruns == 1  # the end is no underrun
    assert buf.drained()


def test_simulated_playhead_counts_stalls():
    sr = SAMPLE_RATE
    head = SimulatedPlayhead(prebuffer_s=0.0)
    head.write(np.zeros(sr // 10), now=0.0)      # 100 ms arrives at t=0: playback starts
    head.write(np.zeros(sr // 10), now=0.05)     # in time
    head.write(np.zeros(sr // 10), now=0.25)     # the speaker ran dry at 0.2 s: one underrun, 50 ms stall
    assert head.underruns == 1 and head.stalled == pytest.approx(0.05)
    head.write(np.zeros(sr // 10), now=0.3)      # played 0.2 s of 0.3 s delivered: fine
    assert head.underruns == 1


def test_script_writes_a_wav_without_a_speaker(ckpt_path, tmp_path, capsys):
    out = tmp_path / 'forced.wav'
    wav, stats = stream_lib.main([f'--ckpt={ckpt_path}', '--text=hi', '--max_seconds=0.4', f'--out={out}',
                                  '--warmup=False'])
    sr, written = wavfile.read(out)
    assert sr == SAMPLE_RATE and len(written) == len(wav) == stats['frames'] * FRAME_SAMPLES
    speaker, reason = stream_lib.open_speaker(0.0)
    if speaker is not None:
        speaker.close()
        pytest.skip('this machine has an audio output device')
    fallback = tmp_path / 'fallback.wav'
    stream_lib.main([f'--ckpt={ckpt_path}', '--text=hi', '--max_seconds=0.4', f'--fallback_out={fallback}'])
    printed = capsys.readouterr().out
    assert printed.count('no audio output') == 1 and fallback.exists()


class FakeSoundDevice:
    """Stands in for the sounddevice module: an OutputStream whose callback a thread calls in real time."""

    def __init__(self):
        self.played = []

    def query_devices(self, kind=None):
        return {'name': 'fake output'}

    def OutputStream(self, samplerate, channels, dtype, blocksize, callback):
        fake = self

        class Stream:
            latency = 0.0

            def start(self):
                self.active = True

                def loop():
                    while self.active:
                        out = np.zeros((blocksize, channels), np.float32)
                        callback(out, blocksize, None, None)
                        fake.played.append(out[:, 0].copy())
                        time.sleep(blocksize / samplerate)
                self.thread = threading.Thread(target=loop, daemon=True)
                self.thread.start()

            def stop(self):
                self.active = False
                self.thread.join()

            def close(self):
                pass
        return Stream()


def test_speaker_plays_the_stream(ckpt_path, monkeypatch):
    """Through the callback stream: the device receives exactly the streamed samples, in order."""
    fake = FakeSoundDevice()
    monkeypatch.setitem(sys.modules, 'sounddevice', fake)
    wav, stats = stream_lib.main([f'--ckpt={ckpt_path}', '--text=hi', '--max_seconds=0.3', '--warmup=False',
                                  '--prebuffer_ms=100'])
    played = np.concatenate(fake.played)  # silence until the prebuffer filled, the stream, silence after it
    assert stats['underruns'] == 0 and np.abs(wav).max() > 0
    np.testing.assert_array_equal(np.trim_zeros(played), np.trim_zeros(wav))
