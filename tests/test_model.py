import pytest
import torch
import torch.nn.functional as F

from generate import compile_decoding, decode_one, generate, prefill, sample_logits, setup_cache
from model import (GPT, GPTConfig, IGNORE_INDEX, Muon, Optimizers, apply_rotary, attend_one_token, causal_attention,
                   causal_attention_in_chunks, orthogonalize, rotary_tables)


def tiny(vocab=300, block=64, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=32, **kw)).eval()


def test_kv_cache_matches_full_forward_for_every_prompt_length():
    model = tiny()
    idx = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    full = model.forward_naive(idx)  # (B, T, V)
    with torch.no_grad():
        for n in range(1, 24):
            setup_cache(model, 2, 32)
            assert (prefill(model, idx[:, :n]) - full[:, n - 1]).abs().max() < 1e-4
            for t in range(n, 24):
                assert (decode_one(model, idx[:, t:t + 1], t) - full[:, t]).abs().max() < 1e-4


def test_left_padded_batch_matches_single_prompts():
    model = tiny()
    a, b = torch.randint(0, 300, (1, 9)), torch.randint(0, 300, (1, 5))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[1, :4] = False
    out = generate(model, batch, 6, temperature=0, valid=valid)
    assert torch.equal(out[0, 9:], generate(model, a, 6, temperature=0)[0, 9:])
    assert torch.equal(out[1, 9:], generate(model, b, 6, temperature=0)[0, 5:])


def test_generate_reproducible_with_seed_and_hook_applies():
    model = tiny()
    idx = torch.randint(0, 300, (3, 4))
    kw = dict(temperature=1.0, top_k=50, top_p=0.9)
    assert torch.equal(generate(model, idx, 12, seed=7, **kw), generate(model, idx, 12, seed=7, **kw))

    def only_even(logits, seq):
        return logits.masked_fill(torch.arange(logits.size(-1)) % 2 == 1, float('-inf'))
    out = generate(model, idx, 12, seed=3, logits_hook=only_even)
    assert (out[:, 4:] % 2 == 0).all()


def test_stop_token_ends_generation():
    model = tiny()

    def stop_at_third(logits, seq):
        forced = 5 if seq.size(1) >= 6 else 7
        return torch.full_like(logits, float('-inf')).index_fill(1, torch.tensor([forced]), 0.0)
    out = generate(model, torch.zeros(2, 4, dtype=torch.long), 20, stop_token=5, logits_hook=stop_at_third)
    assert out[:, 4:].tolist() == [[7, 7, 5]] * 2


def test_padded_vocab_never_sampled_and_top_k():
    model = tiny(vocab=300)
    assert model.config.padded_vocab_size == 320
    logits, _ = model(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 1, 300)
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    picks = {sample_logits(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(s)).item() for s in range(50)}
    assert picks == {1, 2}
    assert sample_logits(logits, 0).item() == 1


def test_ignore_index_and_param_counts():
    model = tiny()
    x = torch.randint(0, 300, (2, 8))
    y = torch.full((2, 8), IGNORE_INDEX)
    y[:, -1] = 3
    _, loss = model(x, y)
    logits = model.forward_naive(x)
    expected = torch.nn.functional.cross_entropy(logits[:, -1], y[:, -1])
    assert abs(loss.item() - expected.item()) < 1e-4
    n_emb = 320 * 32
    assert model.num_params(False) - model.num_params() == n_emb
    assert model.num_params() == 2 * (4 * 32 * 32 + 8 * 32 * 32)


def test_logits_at_targets_only_give_the_same_loss_and_gradients():
    torch.manual_seed(0)
    x = torch.randint(0, 300, (3, 8))
    y = torch.where(torch.rand(3, 8) < 0.4, torch.randint(0, 300, (3, 8)), torch.full((3, 8), IGNORE_INDEX))
    results = []
    for all_logits in (True, False):
        model = tiny()
        logits, loss = model(x, y, all_logits=all_logits)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()], logits))
    (dense, dense_grads, logits), (sparse, sparse_grads, none) = results
    assert logits.shape == (3, 8, 300) and none is None
    assert abs(dense - sparse) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(dense_grads, sparse_grads))
    _, no_target = tiny()(x, torch.full((3, 8), IGNORE_INDEX), all_logits=False)
    assert no_target.item() == 0.0  # a window without targets adds nothing (and no NaN)


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_tiny_model_overfits_one_batch(optimizer):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32))
    x = torch.randint(0, 300, (2, 17))
    opt = model.configure_optimizers(0.0, 1e-2, (0.9, 0.95), 'cpu', optimizer)
    for _ in range(60):
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1  # from ln(300) = 5.7


def test_cpu_decoding_layout_keeps_the_model():
    model = tiny()
    x = torch.randint(0, 300, (2, 10))
    before = model.forward_naive(x)
    setup_cache(model, 2, 32)  # on CPU this stores the linear weights column-major
    assert model.lm_head.weight is model.wte.weight and not model.lm_head.weight.is_contiguous()
    assert torch.allclose(model.forward_naive(x), before, atol=1e-6)


def test_compiled_decoding_matches_eager():
    prompts = [torch.randint(0, 300, (2, 5)), torch.randint(0, 300, (1, 9))]  # a new cache per call: nothing stale
    eager = [generate(tiny(), p, 12, temperature=0) for p in prompts]
    model = tiny()
    compile_decoding(model)
    for p, e in zip(prompts, eager):
        assert torch.equal(generate(model, p, 12, temperature=0), e)


def test_a_reused_cache_gives_fresh_results_and_one_compiled_graph():
    """With a compiled step every request decodes over the same whole-context cache, so stale rows of a longer
    earlier request are never read, and the step sees one cache shape: a new request length must not compile it
    again (it did: the first streamed utterance after a warm-up spent 9 s compiling)."""
    from torch._dynamo.testing import CompileCounter
    long, short = torch.randint(0, 300, (1, 30)), torch.randint(0, 300, (1, 4))
    fresh = generate(tiny(), short, 10, temperature=0)
    model = tiny()
    counter = CompileCounter()
    compile_decoding(model, backend=counter)
    generate(model, long, 20, temperature=0)
    graphs = counter.frame_count
    assert torch.equal(generate(model, short, 10, temperature=0), fresh)
    assert counter.frame_count == graphs
    assert model.blocks[0].attn.cache.k.size(2) == model.config.block_size


def test_rotary_turns_each_pair_of_halves_by_its_position_angle():
    """Pair (i, i + hd/2) of a head at position t turns by t * theta^(-2i/hd), as a complex number would."""
    hd, T, theta = 8, 5, 10000.0
    x = torch.randn(2, T, 3, hd)
    cos, sin = rotary_tables(hd, T, theta)
    angle = torch.arange(T)[:, None] * theta ** (-torch.arange(0, hd, 2) / hd)  # (T, hd/2)
    z = torch.complex(x[..., :hd // 2], x[..., hd // 2:]) * torch.polar(torch.ones_like(angle), angle)[:, None, :]
    assert torch.allclose(apply_rotary(x, cos, sin), torch.cat([z.real, z.imag], -1), atol=1e-5)


def test_one_token_attention_written_out_matches_sdpa():
    """The GPU decoding path (attend_one_token) against scaled_dot_product_attention, fp32 and bf16."""
    q, k, v = torch.randn(2, 3, 1, 16), torch.randn(2, 3, 37, 16), torch.randn(2, 3, 37, 16)
    assert torch.allclose(attend_one_token(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    b = [t.bfloat16() for t in (q, k, v)]
    assert torch.allclose(attend_one_token(*b).float(), F.scaled_dot_product_attention(*b).float(), atol=2e-2)


def test_causal_attention_written_out_matches_sdpa_and_a_bf16_forward_keeps_the_loss():
    """The CPU bf16 path (causal_attention) against scaled_dot_product_attention, fp32 and bf16; and a bf16 forward
    on CPU, which takes it, gives the loss of the same weights in float32 to bf16's precision."""
    q, k, v = (torch.randn(2, 3, 37, 16) for _ in range(3))
    assert torch.allclose(causal_attention(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
    b = [t.bfloat16() for t in (q, k, v)]
    assert torch.allclose(causal_attention(*b).float(),
                          F.scaled_dot_product_attention(*b, is_causal=True).float(), atol=3e-2)
    model = tiny()
    idx = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, loss32 = model(idx[:, :-1], idx[:, 1:])
        _, loss16 = model.to(torch.bfloat16)(idx[:, :-1], idx[:, 1:])
    assert abs(loss16.item() - loss32.item()) < 0.05


def test_causal_attention_in_chunks_matches_sdpa_forward_and_backward():
    """The CPU float32 path for long sequences, on a length the chunks do not divide."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 301, 16, requires_grad=True) for _ in range(3))
    grads = []
    for attend in (causal_attention_in_chunks, lambda *t: F.scaled_dot_product_attention(*t, is_causal=True)):
        y = attend(q, k, v)
        y.square().sum().backward()
        grads.append((y.detach(), *(t.grad.clone() for t in (q, k, v))))
        for t in (q, k, v):
            t.grad = None
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))


def test_orthogonalize_flattens_the_singular_values():
    torch.manual_seed(0)
    for shape in [(32, 96), (96, 32)]:
        g = torch.randn(*shape) @ torch.diag(torch.logspace(-1, 1, shape[1])) if shape[0] > shape[1] else \
            torch.diag(torch.logspace(-1, 1, shape[0])) @ torch.randn(*shape)  # singular values over 2 decades
        s = torch.linalg.svdvals(orthogonalize(g))
        assert s.min() > 0.5 and s.max() < 1.3, s  # Muon's iteration: near 1, not exactly


def test_muon_takes_the_block_matrices_only():
    model = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', 'muon')
    adamw, muon = opt.optimizers
    on_muon = {id(p) for g in muon.param_groups for p in g['params']}
    assert isinstance(opt, Optimizers) and isinstance(muon, Muon)
    assert id(model.wte.weight) not in on_muon and len(on_muon) == 4 * 2  # qkv, proj, fc, mlp proj per block
    assert {id(p) for g in adamw.param_groups for p in g['params']} | on_muon == {id(p) for p in model.parameters()}
    with pytest.raises(ValueError, match='--optimizer=sgd'):
        model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', 'sgd')
