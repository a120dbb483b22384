import math

import pytest
import torch
import torch.nn.functional as F

from espnet_bilevel.losses.abs_ssl_loss import BackboneView
from espnet_bilevel.losses.bestrq import BestRQLoss, code_usage_stats
from espnet_bilevel.losses.birq import BiRQLoss
from padded_batches import random_padded_batch, seeded_generators

F_IN, D, S, LAYERS = 8, 16, 4, 3
STAT_KEYS = {
    "loss_enhanced", "loss_anchor", "acc_enhanced", "acc_anchor", "anchor_code_entropy",
    "enhanced_code_entropy", "anchor_code_usage", "enhanced_code_usage", "mask_frac", "gumbel_tau",
}


def _loss(**kw):
    opts = dict(codebook_size=16, codebook_dim=8, enhanced_codebook_size=16,
                enhanced_codebook_dim=8, subsampling=S)
    opts.update(kw)
    torch.manual_seed(42)  # the heads; the frozen quantizers come from their seeds
    return BiRQLoss(input_size=F_IN, encoder_output_size=D, **opts)


def _batch(lengths=(160, 120, 100), seed=1):
    return random_padded_batch(F_IN, lengths, seed)


def _grad_sum(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def _masked_pass_without_grad(enc):
    """A view whose masked pass (return_all_layers=False) is cut from the graph, so the only
    path from the loss to θ is the unmasked target pass."""

    def encode(feats, lengths, return_all_layers=False):
        if return_all_layers:
            return enc(feats, lengths, True)
        with torch.no_grad():
            return enc(feats, lengths, False)

    return BackboneView(encode, F_IN, D, S, LAYERS, enc.output_lengths)


def test_loss_is_weighted_sum_and_stats(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    loss_fn = _loss()
    assert loss_fn.target_layer(enc.view()) == 2  # round(0.7 * 3)
    assert isinstance(loss_fn, BestRQLoss)
    feats, lengths = _batch()
    loss, stats = loss_fn(feats, lengths, enc.view(), generators=seeded_generators([1, 2, 3]))
    assert set(stats) == STAT_KEYS
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())
    expected = 0.1 * stats["loss_enhanced"] + 2.4 * stats["loss_anchor"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert stats["gumbel_tau"].item() == 0.5
    assert 0 < stats["enhanced_code_entropy"].item() <= math.log(16) + 1e-6
    # the masked pass first (final output only), then the unmasked pass for the targets
    assert len(enc.calls) == 2 and torch.equal(enc.calls[1][0], feats)
    assert not torch.equal(enc.calls[0][0], feats)
    loss.backward()
    for name, p in list(enc.named_parameters()) + list(loss_fn.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # G is exactly BEST-RQ: same masks, noise, labels and head -> same loss
    ref = BestRQLoss(F_IN, D, codebook_size=16, codebook_dim=8, subsampling=S)
    ref.load_state_dict({k: v for k, v in loss_fn.state_dict().items() if k.startswith(("heads", "rpq"))})
    g_ref, _ = ref(feats, lengths, enc.view(), generators=seeded_generators([1, 2, 3]))
    assert stats["loss_anchor"].item() == pytest.approx(g_ref.item(), rel=1e-6)


def test_enhanced_quantizer_is_frozen_buffers():
    a, b = _loss(), _loss()
    torch.manual_seed(7)
    c = BiRQLoss(F_IN, D, codebook_size=16, codebook_dim=8, enhanced_codebook_size=16,
                 enhanced_codebook_dim=8, enhanced_rpq_seed=5)
    params = dict(a.named_parameters())
    for name in ("rpq_projection", "rpq_codebook", "enhanced_projection", "enhanced_codebook"):
        assert name not in params and name in a.state_dict()
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert set(params) == {"heads.0.weight", "heads.0.bias", "head_enhanced.weight", "head_enhanced.bias"}
    assert a.enhanced_projection.shape == (D, 8) and a.enhanced_codebook.shape == (16, 8)
    assert torch.allclose(a.enhanced_codebook.norm(dim=-1), torch.ones(16))
    assert not torch.equal(a.enhanced_projection, c.enhanced_projection)
    assert torch.equal(a.rpq_projection, c.rpq_projection)


@pytest.mark.parametrize("norm", ["layer", "instance"])
def test_enhanced_logits_hand_computed(norm):
    loss_fn = _loss(enhanced_norm=norm)
    z = torch.randn(2, 5, D)
    lengths = torch.tensor([5, 3])
    logits = loss_fn.enhanced_logits(z, lengths)
    for b in range(2):
        for t in range(int(lengths[b])):
            if norm == "layer":  # this frame over its channels
                x = z[b, t]
                x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
            else:  # each channel over the utterance's valid frames
                u = z[b, : int(lengths[b])]
                x = (z[b, t] - u.mean(0)) / torch.sqrt(u.var(0, unbiased=False) + 1e-5)
            p = x @ loss_fn.enhanced_projection
            expected = torch.stack([-((p - c) ** 2).sum() for c in loss_fn.enhanced_codebook])
            assert torch.allclose(logits[b, t], expected, atol=1e-4)
            # the argmax is BEST-RQ's cosine rule on the layer output
            cos = F.normalize(p, dim=0) @ loss_fn.enhanced_codebook.t()
            assert logits[b, t].argmax() == cos.argmax()


def test_enhanced_targets_carry_gradient_into_first_k_layers_only(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    feats, lengths = _batch()
    # F alone (w2 = 0), masked pass detached: any θ gradient must come through the targets
    loss_fn = _loss(anchor_weight=0.0, enhanced_layer=2)
    loss, stats = loss_fn(feats, lengths, _masked_pass_without_grad(enc), generators=seeded_generators([1, 2, 3]))
    assert stats["loss_enhanced"] > 0
    loss.backward()
    for name in ("conv", "local", "mix"):  # layer 1
        assert _grad_sum(getattr(enc, name)) > 0, name
    assert _grad_sum(enc.blocks[0]) > 0  # layer 2 = k
    assert _grad_sum(enc.blocks[1]) == 0  # layer 3 > k: the targets never see it
    assert _grad_sum(loss_fn.head_enhanced) > 0

    # G alone (w1 = 0): the anchor targets are integers of the input, so no θ gradient at all
    enc.zero_grad()
    loss_fn = _loss(enhanced_weight=0.0, enhanced_layer=2)
    loss, stats = loss_fn(feats, lengths, _masked_pass_without_grad(enc), generators=seeded_generators([1, 2, 3]))
    assert stats["loss_anchor"] > 0
    loss.backward()
    assert _grad_sum(enc) == 0
    assert _grad_sum(loss_fn.heads) > 0


def test_gumbel_temperature_takes_effect(make_encoder):
    loss_fn = _loss()
    logits = loss_fn.enhanced_logits(torch.randn(2, 6, D))
    hard = F.one_hot(logits.argmax(-1), 16).float()
    # τ → 0 approaches the hard one-hot of the nearest codeword (noise-free, as in eval)
    assert torch.allclose(loss_fn.soft_targets(logits, None, tau=1e-4), hard, atol=1e-4)
    soft_05 = loss_fn.soft_targets(logits, None, tau=0.5)
    soft_2 = loss_fn.soft_targets(logits, None, tau=2.0)
    ent = lambda y: -(y * y.clamp(min=1e-12).log()).sum(-1).mean()  # noqa: E731
    assert ent(soft_2) > ent(soft_05) > ent(hard) - 1e-6
    assert torch.allclose(soft_05.sum(-1), torch.ones(2, 6))
    # with Gumbel noise the τ → 0 limit is the one-hot of argmax(logits + g)
    g = loss_fn.gumbel_noise((2, 6, 16), torch.tensor([6, 6]), torch.Generator().manual_seed(0), None)
    noisy = F.one_hot((logits + g).argmax(-1), 16).float()
    assert torch.allclose(loss_fn.soft_targets(logits, g, tau=1e-4), noisy, atol=1e-4)
    # straight-through: exactly one-hot values, gradient of the soft ones
    st = _loss(gumbel_hard=True)
    lg = logits.clone().requires_grad_(True)
    y = st.soft_targets(lg, None)
    assert torch.equal(y.detach(), hard)
    (y * torch.randn_like(y)).sum().backward()
    assert lg.grad.abs().sum() > 0

    # in the loss: a different τ changes F (not G)
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    feats, lengths = _batch()
    s05 = _loss(gumbel_tau=0.5).eval()(feats, lengths, enc.view())[1]
    s2 = _loss(gumbel_tau=2.0).eval()(feats, lengths, enc.view())[1]
    assert s05["loss_anchor"].item() == s2["loss_anchor"].item()
    assert s05["loss_enhanced"].item() != pytest.approx(s2["loss_enhanced"].item(), rel=1e-3)
    assert s2["gumbel_tau"].item() == 2.0


def test_enhanced_loss_and_entropy_hand_computed(make_encoder):
    # k = last layer, so the unmasked pass's recorded output is the target layer
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    loss_fn = _loss(enhanced_layer=LAYERS).eval()
    feats, lengths = _batch()
    _, stats = loss_fn(feats, lengths, enc.view())
    out_lens = lengths // S
    t_out = int(out_lens.max())
    masked_out, layer_k = enc.calls[0][2][:, :t_out], enc.calls[1][2][:, :t_out]
    mask_out = (enc.calls[0][0] != feats).any(-1)[:, : S * t_out].reshape(3, t_out, S).all(-1)
    logits = loss_fn.enhanced_logits(layer_k, out_lens)
    y = torch.softmax(logits / 0.5, dim=-1)  # eval: no Gumbel noise
    log_p = torch.log_softmax(loss_fn.head_enhanced(masked_out[mask_out]), dim=-1)
    expected_f = -(y[mask_out] * log_p).sum(-1).mean()
    assert stats["loss_enhanced"].item() == pytest.approx(expected_f.item(), rel=1e-5)
    valid = torch.arange(t_out)[None, :] < out_lens[:, None]
    counts = torch.bincount(logits.argmax(-1)[valid], minlength=16).float()
    p = counts[counts > 0] / counts.sum()
    assert stats["enhanced_code_entropy"].item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-5)
    assert stats["enhanced_code_usage"].item() == pytest.approx(float((counts > 0).sum()) / 16)
    entropy, _ = code_usage_stats(logits.argmax(-1)[valid], 16)
    assert stats["enhanced_code_entropy"].item() == pytest.approx(entropy.item(), abs=1e-6)


def test_rows_are_independent_of_batch_mates_with_generators(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    loss_fn = _loss(reduction="utterance")
    feats, lengths = _batch()
    seeds = [21, 22, 23]
    torch.manual_seed(0)
    batch_loss, _ = loss_fn(feats, lengths, enc.view(), generators=seeded_generators(seeds))
    alone = []
    for b in range(3):
        torch.manual_seed(100 + b)
        n = int(lengths[b])
        loss_b, _ = loss_fn(feats[b : b + 1, :n], lengths[b : b + 1], enc.view(),
                            generators=seeded_generators(seeds[b : b + 1]))
        alone.append(loss_b.item())
    assert batch_loss.item() == pytest.approx(sum(alone) / 3, rel=1e-5)
    # the Gumbel noise comes from the generators too: same seeds -> same loss
    again, _ = loss_fn(feats, lengths, enc.view(), generators=seeded_generators(seeds))
    assert again.item() == batch_loss.item()


def test_eval_is_deterministic(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    loss_fn = _loss().eval()
    feats, lengths = _batch()
    torch.manual_seed(1)
    l1, s1 = loss_fn(feats, lengths, enc.view())
    torch.manual_seed(2)
    l2, s2 = loss_fn(feats, lengths, enc.view())
    assert l1.item() == l2.item() and all(s1[k].item() == s2[k].item() for k in STAT_KEYS)


def test_bad_layer_configuration_raises(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    feats, lengths = _batch()
    with pytest.raises(ValueError, match="enhanced_layer"):
        _loss(enhanced_layer=4)(feats, lengths, enc.view())
    with pytest.raises(ValueError, match="enhanced_layer"):
        _loss(enhanced_layer=0)
    view = enc.view()
    view.num_layers = 4  # the backbone returns fewer layer outputs than it claims
    with pytest.raises(RuntimeError, match="one output per encoder layer"):
        _loss(enhanced_layer=2)(feats, lengths, view)


def test_no_mask_possible_gives_zero_loss(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    loss_fn = _loss(mask_span=5)
    feats, lengths = _batch((12, 16))
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert loss.item() == 0.0 and stats["mask_frac"].item() == 0.0
    loss.backward()


def test_overfits_fixed_batch(make_encoder, overfit, piecewise_constant_batch):
    enc = make_encoder(F_IN, D, S, num_layers=LAYERS)
    loss_fn = _loss()
    feats, lengths = piecewise_constant_batch(F_IN)
    before, after = overfit(loss_fn, enc, feats, lengths, steps=30)
    assert after < 0.8 * before, (before, after)


def test_instance_norm_removes_the_common_direction_that_collapses_layer_norm_codes():
    """Frames = one shared large vector + small per-frame variation (what training drove layer k
    to on the mini corpus): per-frame LayerNorm keeps the shared direction, so every frame gets the
    same code; per-utterance channel standardization removes it and the codes spread out."""
    gen = torch.Generator().manual_seed(0)
    common = 10.0 * torch.randn(D, generator=gen)
    z = common + 0.1 * torch.randn(2, 40, D, generator=gen)
    lengths = torch.tensor([40, 40])

    def codes(norm):
        loss_fn = _loss(enhanced_norm=norm, enhanced_codebook_size=16)
        entropy, usage = code_usage_stats(loss_fn.enhanced_logits(z, lengths).argmax(-1).flatten(), 16)
        return entropy.item(), usage.item()

    layer_entropy, layer_usage = codes("layer")
    inst_entropy, inst_usage = codes("instance")
    assert layer_usage == 1 / 16 and layer_entropy == 0.0
    assert inst_usage >= 8 / 16 and inst_entropy > 1.5


def test_enhanced_norm_is_checked():
    with pytest.raises(ValueError, match="enhanced_norm must be 'instance' or 'layer', got 'batch'"):
        _loss(enhanced_norm="batch")
