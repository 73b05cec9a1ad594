"""sample.py: the audio frame grammar, the tasks on a tiny random checkpoint, and the bad-input errors."""
import json
import os

import numpy as np
import pytest
import torch
from scipy.io import wavfile

import codec as codec_lib
import sample
from common import load_checkpoint
from generate import decode_one, generate_tokens, prefill, sample_logits, setup_cache
from fixtures import sine_sweep
from sample import FrameGrammar, asr, continue_text, decode_codes, generate_raw, tts
from tokenizer import FRAME_LEN, FRAME_SAMPLES, SAMPLE_RATE, Tokenizer, flatten, unflatten


pytestmark = pytest.mark.usefixtures('one_thread')


# -----------------------------------------------------------------------------
# the grammar


def run_grammar(tok, prompts, want, steps, seed, min_frames=1, max_frames=None, scale=5.0, bias=None):
    """Random logits (+ bias) through the hook, sampled, for left-padded prompts; returns the new ids per row."""
    g = torch.Generator().manual_seed(seed)
    bias = torch.zeros(tok.vocab_size) if bias is None else bias
    T = max(len(p) for p in prompts)
    seq = torch.tensor([[tok.pad] * (T - len(p)) + list(p) for p in prompts])
    hook = FrameGrammar(tok, want, min_frames, max_frames)
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(steps):
        lo, hi = hook.head_rows(seq)  # what generate_tokens asks before a step: only these rows are computed
        logits = hook(torch.randn(len(prompts), tok.vocab_size, generator=g) * scale + bias, seq)
        assert torch.isfinite(logits).any(dim=-1).all(), "the mask left a row with nothing legal"
        legal = torch.isfinite(logits).nonzero()[:, 1]
        assert lo <= legal.min() and legal.max() < hi, "a legal id outside the rows the model computes"
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, tok.eos), nxt)
        done |= nxt == tok.eos
        seq = torch.cat([seq, nxt[:, None]], 1)
    return [row[T:].tolist() for row in seq]


@pytest.mark.parametrize('layout', ['level', 'position'])
def test_grammar_tts_gives_whole_frames_in_range(layout):
    tok = Tokenizer('byte', layout)
    prompts = [tok.tts_prompt('hi').tolist(), tok.tts_prompt('a longer text', desc='calm').tolist()]
    for seed in range(3):
        for row in run_grammar(tok, prompts, 'audio', steps=FRAME_LEN * 6 + 1, seed=seed, min_frames=2, max_frames=6):
            assert row[-1] == tok.eos  # forced at max_frames at the latest
            audio = row[:row.index(tok.eos)]
            assert len(audio) % FRAME_LEN == 0 and 2 <= len(audio) // FRAME_LEN <= 6
            levels = unflatten(tok.audio_codes(audio))  # raises unless every id is in its position's range
            assert len(levels[0]) == len(audio) // FRAME_LEN


@pytest.mark.parametrize('layout', ['level', 'position'])
def test_grammar_any_keeps_audio_spans_whole(layout):
    """Free generation from prompts that open an audio span mid-way: the span stays whole frames."""
    tok = Tokenizer('byte', layout)
    mid_frame = [tok.audio] + list(tok.audio_ids(np.arange(FRAME_LEN))) + list(tok.audio_ids(np.arange(FRAME_LEN)))[:3]
    prompts = [[tok.text] + tok.encode_text('ab') + [tok.audio], mid_frame, [tok.text, 65]]
    bias = torch.zeros(tok.vocab_size)
    bias[[tok.audio, tok.text, tok.desc]] = 8.0  # markers as likely as all audio codes: rows go in and out of audio
    n_audio = 0
    for seed in range(3):
        for prompt, row in zip(prompts, run_grammar(tok, prompts, 'any', steps=60, seed=seed, scale=2.0, bias=bias)):
            pieces, warns = tok.split(prompt + row + [tok.eos])
            # only the last span may be cut, by the step limit, never a span the model closed
            assert all('partial trailing frame' in w for w in warns), warns
            assert len(warns) <= 1
            n_audio += sum(kind == 'audio' for kind, _ in pieces)
    assert n_audio > 8


def test_grammar_text_emits_only_text_and_eos():
    tok = Tokenizer('byte', 'level')
    rows = run_grammar(tok, [tok.asr_prompt(np.zeros(FRAME_LEN, dtype=np.int64)).tolist()], 'text', 40, seed=0)
    assert all(i < tok.n_text or i == tok.eos for i in rows[0])


def test_sampler_draws_from_the_softmax_and_never_a_masked_id():
    """model.sample_logits (inverse-CDF draw) under the grammar's -inf masks."""
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, float('-inf'), 2.0, float('-inf')]]).repeat(4000, 1)  # 4000 rows at once
    counts = torch.bincount(sample_logits(logits, 1.0, generator=g), minlength=5).float()
    expected = logits[0].softmax(-1) * len(logits)
    assert counts[2] == counts[4] == 0
    assert ((counts - expected).abs() < 4 * expected.sqrt() + 1).all(), (counts, expected)
    only = torch.full((3, 50), float('-inf'))
    only[0, 49], only[1, 0], only[2, 7] = 0.0, 0.0, 0.0  # a single legal id, at either end and inside
    assert sample_logits(only, 1.0, generator=g).tolist() == [49, 0, 7]


def test_grammar_mask_is_a_table_lookup():
    """The per-state masks are built once; a call adds one row per sequence."""
    tok = Tokenizer('byte', 'level')
    hook = FrameGrammar(tok, 'audio')
    assert hook.table.shape == (sample.N_STATES, tok.vocab_size)
    lo, hi = tok.legal_audio_range(3)
    assert torch.isfinite(hook.table[3]).nonzero()[:, 0].tolist() == list(range(lo, hi))
    with pytest.raises(ValueError, match='unknown grammar'):
        FrameGrammar(tok, 'speech')

# -----------------------------------------------------------------------------
# the tasks on an untrained model


def test_untrained_tts_decodes_to_expected_length(loaded):
    model, tok, codec, _ = loaded
    codes, info = tts(model, tok, ['hello', 'a longer sentence here'], max_seconds=0.5, seed=0, return_info=True)
    for flat, rec in zip(codes, info):
        T = len(flat) // FRAME_LEN
        assert len(flat) == T * FRAME_LEN and 1 <= T <= rec['frames'] <= round(0.5 / (FRAME_SAMPLES / SAMPLE_RATE))
        assert len(decode_codes(codec, flat)) == T * FRAME_SAMPLES


def test_computing_only_the_legal_rows_changes_no_token(loaded):
    """generate_tokens computes only the output rows FrameGrammar.head_rows names: greedy TTS and ASR give the
    same tokens as with the whole output layer."""
    model, tok, _, _ = loaded

    class WholeOutputLayer(FrameGrammar):
        head_rows = None

    prompts = [torch.tensor([tok.tts_prompt('hello there').tolist()]),
               torch.tensor([tok.asr_prompt(np.arange(4 * FRAME_LEN) % 50).tolist()])]
    for prompt, want in zip(prompts, ('audio', 'text')):
        runs = [torch.stack(list(generate_tokens(model, prompt, 30, temperature=0.0, logits_hook=grammar(tok, want),
                                                       stop_token=tok.eos)))
                for grammar in (FrameGrammar, WholeOutputLayer)]
        assert runs[0].tolist() == runs[1].tolist()


def test_batched_left_padding_matches_one_by_one(loaded):
    model, tok, _, _ = loaded
    texts = ['a', 'a much longer prompt than the first']
    together = continue_text(model, tok, texts, max_new_tokens=8, temperature=0.0)
    alone = [continue_text(model, tok, [t], max_new_tokens=8, temperature=0.0)[0] for t in texts]
    assert together == alone


def test_bfloat16_weights_keep_a_float32_cache_on_cpu(ckpt_path):
    """--dtype=bfloat16: the KV cache stays float32 on CPU (generate.setup_cache) and the cached logits agree with
    the bf16 reference forward within bf16 rounding; TTS still decodes."""
    model, tok, codec, _ = load_checkpoint(ckpt_path, 'cpu', dtype='bfloat16')
    idx = torch.tensor([tok.tts_prompt('hello').tolist()])
    with torch.inference_mode():
        full = model.forward_naive(idx).float()  # (1, T, V)
        setup_cache(model, 1, idx.size(1))
        assert model.blocks[0].attn.cache.k.dtype == torch.float32
        assert (prefill(model, idx[:, :-1]).float() - full[:, -2]).abs().max() < 0.05 * full.abs().max()
        assert (decode_one(model, idx[:, -1:], idx.size(1) - 1).float() - full[:, -1]).abs().max() < 0.05 * full.abs().max()
    codes = tts(model, tok, ['hi'], max_seconds=0.3, seed=0)[0]
    assert len(decode_codes(codec, codes)) == len(codes) // FRAME_LEN * FRAME_SAMPLES > 0


def test_asr_takes_codes_waveforms_and_paths(loaded, tmp_path):
    model, tok, codec, _ = loaded
    wav = sine_sweep(0.5)
    flat = flatten(codec.encode(wav))
    codec_lib.write_wav(str(tmp_path / 'a.wav'), wav)
    out = asr(model, tok, [flat, wav, str(tmp_path / 'a.wav')], codec, max_new_tokens=6)
    assert len(out) == 3 and out[0] == out[1] and all(isinstance(t, str) for t in out)


def test_raw_mode_reads_back(loaded):
    model, tok, _, _ = loaded
    rows, info = generate_raw(model, tok, [[tok.text, 104, 105, tok.audio]], max_new_tokens=30, seed=0, return_info=True)
    assert all('partial trailing frame' in w for w in info[0]['warnings']) and len(rows[0]) <= 30

# -----------------------------------------------------------------------------
# the script end to end


def test_script_modes_end_to_end(ckpt_path, tmp_path):
    out = str(tmp_path / 'out')
    rec = sample.main([f'--ckpt={ckpt_path}', '--mode=tts', '--text=hello there', '--text=hi', '--desc=a calm voice',
                       '--max_seconds=0.4', f'--out={out}'])
    for r in rec['results']:
        sr, wav = wavfile.read(r['wav'])
        assert sr == SAMPLE_RATE and len(wav) == r['frames'] * FRAME_SAMPLES
    assert json.load(open(os.path.join(out, 'tts.json')))['results'][1]['desc'] == 'a calm voice'
    rec = sample.main([f'--ckpt={ckpt_path}', '--mode=asr', f"--wav={rec['results'][0]['wav']}", '--max_new_tokens=5',
                       f'--out={out}'])
    assert isinstance(rec['results'][0]['transcript'], str)
    rec = sample.main([f'--ckpt={ckpt_path}', '--mode=text', '--text=the cat', '--max_new_tokens=5', f'--out={out}'])
    assert len(rec['results'][0]['generated_ids']) <= 5
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('slow voice\tfirst line\nsecond line\n')
    rec = sample.main([f'--ckpt={ckpt_path}', '--mode=tts', f'--file={prompts}', '--max_seconds=0.2', f'--out={out}'])
    assert [r['desc'] for r in rec['results']] == ['slow voice', None]

# -----------------------------------------------------------------------------
# bad input


def test_missing_and_foreign_checkpoints(ckpt_path, tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'):
        load_checkpoint(str(tmp_path / 'nope.pt'))
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='not a readable checkpoint'):
        load_checkpoint(str(junk))
    with pytest.raises(ValueError, match='vocabulary differs'):
        load_checkpoint(ckpt_path, expect_vocab='byte/position')
    meta = tmp_path / 'meta.json'
    meta.write_text(json.dumps(dict(vocab=Tokenizer('byte', 'level').to_dict())))
    load_checkpoint(ckpt_path, need_codec=False, expect_vocab=str(meta))  # the same vocabulary passes
    ck = torch.load(ckpt_path, weights_only=False)
    ck['vocab'] = Tokenizer('byte', 'position').to_dict()  # weights for 12,554 ids, a vocabulary of 28,938
    torch.save(ck, tmp_path / 'mixed.pt')
    with pytest.raises(ValueError, match='different runs'):
        load_checkpoint(str(tmp_path / 'mixed.pt'))


def test_bad_prompts(loaded, tmp_path):
    model, tok, codec, _ = loaded
    with pytest.raises(ValueError, match='text 1 is empty'):
        tts(model, tok, ['fine', '  '])
    with pytest.raises(ValueError, match='outside the vocabulary'):
        generate_raw(model, tok, [[tok.text, tok.vocab_size + 5]])
    with pytest.raises(ValueError, match='--mode'):
        sample.main(['--mode=video'])
    not_audio = tmp_path / 'notes.wav'
    not_audio.write_text('these are words, not samples')
    with pytest.raises(ValueError, match='notes.wav'):
        asr(model, tok, [str(not_audio)], codec)


def test_silence_stereo_and_8khz_are_handled(loaded, tmp_path):
    model, tok, codec, _ = loaded
    wavfile.write(tmp_path / 'silence.wav', SAMPLE_RATE, np.zeros(SAMPLE_RATE // 4, np.int16))
    stereo = (np.stack([sine_sweep(0.25, 8000)] * 2, axis=1) * 32767).astype(np.int16)  # (N, 2) at 8 kHz
    wavfile.write(tmp_path / 'stereo8k.wav', 8000, stereo)
    with pytest.warns(UserWarning, match='silent'):
        out = asr(model, tok, [str(tmp_path / 'silence.wav'), str(tmp_path / 'stereo8k.wav')], codec, max_new_tokens=4)
    assert len(out) == 2


def test_requests_longer_than_the_context(loaded):
    model, tok, codec, _ = loaded
    block = model.config.block_size
    with pytest.warns(UserWarning, match='capped'):
        codes = tts(model, tok, ['hi'], max_seconds=60, seed=0)
    assert len(tok.tts_prompt('hi')) + len(codes[0]) + 1 <= block
    too_long = np.zeros(FRAME_LEN * (block // FRAME_LEN + 1), dtype=np.int64)
    with pytest.raises(ValueError, match='at most about'):
        asr(model, tok, [too_long])
    with pytest.raises(ValueError, match='nothing fits'):
        continue_text(model, tok, ['x' * block])
    with pytest.warns(UserWarning, match='exceed'):
        continue_text(model, tok, ['x' * (block - 10)], max_new_tokens=50)
