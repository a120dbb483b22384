import math

import pytest
import torch
import torch.nn.functional as F

from espnet_bilevel.losses.abs_ssl_loss import BackboneView
from espnet_bilevel.losses.bestrq import BestRQLoss, code_usage_stats
from padded_batches import random_padded_batch, seeded_generators

F_IN, D, S = 8, 16, 4
STAT_KEYS = {"acc", "code_entropy", "code_usage", "mask_frac"}


def _loss(**kw):
    opts = dict(codebook_size=16, codebook_dim=8, subsampling=S)
    opts.update(kw)
    torch.manual_seed(42)  # the heads; the RPQ buffers come from rpq_seed
    return BestRQLoss(input_size=F_IN, encoder_output_size=D, **opts)


def _batch(lengths=(160, 120, 100), seed=1):
    return random_padded_batch(F_IN, lengths, seed)


def _masks_from_seen(seen, feats, t_out):
    """Recover the masks from what the encoder received (masked frames differ from feats)."""
    mask_in = (seen != feats).any(-1)
    mask_out = mask_in[:, : S * t_out].reshape(feats.size(0), t_out, S).all(-1)
    return mask_in, mask_out


def test_finite_loss_stats_and_gradients(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss()
    feats, lengths = _batch()
    torch.manual_seed(0)
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    assert set(stats) == STAT_KEYS
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())
    assert 0.0 < stats["mask_frac"].item() < 1.0
    assert 0.0 < stats["code_entropy"].item() <= math.log(16) + 1e-6
    assert 0.0 < stats["code_usage"].item() <= 1.0
    loss.backward()
    for name, p in list(enc.named_parameters()) + list(loss_fn.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rpq_is_frozen_buffers_saved_and_seeded():
    torch.manual_seed(123)  # the global RNG must not matter for the frozen targets
    a = BestRQLoss(F_IN, D, codebook_size=16, codebook_dim=8)
    torch.manual_seed(456)
    b = BestRQLoss(F_IN, D, codebook_size=16, codebook_dim=8)
    c = BestRQLoss(F_IN, D, codebook_size=16, codebook_dim=8, rpq_seed=1)
    params = dict(a.named_parameters())
    assert "rpq_projection" not in params and "rpq_codebook" not in params
    assert all(name.startswith("heads.") for name in params)
    sd = a.state_dict()
    assert sd["rpq_projection"].shape == (1, F_IN * S, 8)
    assert sd["rpq_codebook"].shape == (1, 16, 8)
    assert not a.rpq_projection.requires_grad and not a.rpq_codebook.requires_grad
    assert torch.equal(a.rpq_projection, b.rpq_projection) and torch.equal(a.rpq_codebook, b.rpq_codebook)
    assert not torch.equal(a.rpq_projection, c.rpq_projection)
    assert torch.allclose(a.rpq_codebook.norm(dim=-1), torch.ones(1, 16))
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert a.rpq_projection.abs().max() <= math.sqrt(6 / (F_IN * S + 8))
    # a checkpoint carries the targets: loading into a differently seeded instance restores them
    c.load_state_dict(sd)
    assert torch.equal(c.rpq_projection, a.rpq_projection)


def test_labels_equal_hand_computed_nearest_neighbour():
    # F=1, s=2: stacked vectors are consecutive frame pairs; identity projection, 4 codewords
    loss_fn = BestRQLoss(1, D, subsampling=2, codebook_size=4, codebook_dim=2)
    with torch.no_grad():
        loss_fn.rpq_projection.copy_(torch.eye(2)[None])
        loss_fn.rpq_codebook.copy_(torch.tensor([[[1.0, 0], [0, 1], [-1, 0], [0, -1]]]))
    feats = torch.tensor([3.0, 0.5, -1.0, -5.0, -0.2, 0.9, -4.0, 1.0]).view(1, 8, 1)
    labels = loss_fn.anchor_labels(feats, 4)
    assert labels.dtype == torch.long and labels.shape == (1, 4, 1)
    assert labels[0, :, 0].tolist() == [0, 3, 1, 2]

    # random instance: brute-force Euclidean nearest neighbour of the normalized projections
    loss_fn = _loss()
    feats, _ = _batch()
    t_out = 30
    labels = loss_fn.anchor_labels(feats, t_out)[..., 0]
    for b in range(feats.size(0)):
        for t in range(t_out):
            x = feats[b, S * t : S * t + S].reshape(-1)
            p = x @ loss_fn.rpq_projection[0]
            p = p / p.norm()
            dists = [float(((p - cw) ** 2).sum()) for cw in loss_fn.rpq_codebook[0]]
            assert labels[b, t].item() == min(range(16), key=dists.__getitem__)


def test_anchor_targets_do_not_depend_on_backbone_and_ce_is_hand_computed(make_encoder):
    loss_fn = _loss().eval()
    feats, lengths = _batch()
    feats = feats.requires_grad_(True)  # even then, labels carry no graph
    t_out = int((lengths // S).max())
    labels = loss_fn.anchor_labels(feats, t_out)
    assert labels.dtype == torch.long and not labels.requires_grad
    for seed in (0, 1):  # two different backbones θ
        enc = make_encoder(F_IN, D, S, seed=seed)
        loss, _ = loss_fn(feats, lengths, enc.view())
        seen, _, out = enc.calls[0]
        mask_in, mask_out = _masks_from_seen(seen, feats.detach(), t_out)
        assert mask_out.any()
        # G = CE of the head at masked frames against the θ-free labels, nothing else
        logits = loss_fn.heads[0](out[:, :t_out][mask_out])
        expected = F.cross_entropy(logits, labels[..., 0][mask_out])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.equal(loss_fn.anchor_labels(feats, t_out), labels)


def test_masked_frames_get_noise(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss(mask_prob=0.6, noise_std=0.1)
    feats, lengths = _batch()
    loss_fn(feats, lengths, enc.view(), generators=seeded_generators([1, 2, 3]))
    seen = enc.calls[0][0]
    # replay the same per-row streams: mask first, then noise
    gens = seeded_generators([1, 2, 3])
    mask_out, mask_in, out_lens = loss_fn.draw_mask(lengths, feats.size(1), enc.view(), generators=gens)
    expected = loss_fn.apply_noise(feats, lengths, mask_in, generators=gens)
    assert torch.equal(seen, expected)
    assert mask_in.any() and torch.equal(seen[~mask_in], feats[~mask_in])
    noise = seen[mask_in]
    assert abs(noise.mean().item()) < 0.02 and noise.std().item() == pytest.approx(0.1, rel=0.15)
    # whole blocks of s input frames per masked encoder frame, never beyond the valid length
    assert torch.equal(mask_in[:, : S * mask_out.size(1)].view(3, -1, S).all(-1), mask_out)
    assert not (mask_in & (torch.arange(feats.size(1))[None, :] >= lengths[:, None])).any()


def test_ce_only_at_masked_positions(make_encoder):
    enc = make_encoder(F_IN, D, S)
    captured = {}

    def encode(feats, lengths, return_all_layers=False):
        out, out_lens, layers = enc(feats, lengths, return_all_layers)
        out.retain_grad()
        captured["out"], captured["seen"] = out, feats
        return out, out_lens, layers

    view = BackboneView(encode, F_IN, D, S, 1, enc.output_lengths)
    loss_fn = _loss()
    feats, lengths = _batch()
    loss, _ = loss_fn(feats, lengths, view, generators=seeded_generators([4, 5, 6]))
    loss.backward()
    t_out = captured["out"].size(1)
    _, mask_out = _masks_from_seen(captured["seen"].detach(), feats, t_out)
    grad_norm = captured["out"].grad.abs().sum(-1)
    assert (grad_norm[mask_out] > 0).all()
    assert (grad_norm[~mask_out] == 0).all()


def test_code_usage_stats_hand_computed():
    labels = torch.tensor([0, 0, 1, 2])
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    entropy, usage = code_usage_stats(labels, 4)
    assert entropy.item() == pytest.approx(h, abs=1e-6) and usage.item() == pytest.approx(0.75)
    # two codebooks: averaged (second one uniform over 4 entries: log 4, usage 1)
    two = torch.stack([labels, torch.tensor([0, 1, 2, 3])], dim=1)
    entropy, usage = code_usage_stats(two, 4)
    assert entropy.item() == pytest.approx((h + math.log(4)) / 2, abs=1e-6)
    assert usage.item() == pytest.approx(0.875)


def test_code_entropy_stat_matches_batch_histogram(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss().eval()
    feats, lengths = _batch()
    _, stats = loss_fn(feats, lengths, enc.view())
    out_lens = lengths // S
    labels = loss_fn.anchor_labels(feats, int(out_lens.max()))[..., 0]
    valid = torch.arange(labels.size(1))[None, :] < out_lens[:, None]
    counts = torch.bincount(labels[valid], minlength=16).float()
    p = counts[counts > 0] / counts.sum()
    assert stats["code_entropy"].item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-5)
    assert stats["code_usage"].item() == pytest.approx(float((counts > 0).sum()) / 16)
    # collapse: every codeword identical -> every label is entry 0, entropy 0
    with torch.no_grad():
        loss_fn.rpq_codebook.copy_(loss_fn.rpq_codebook[:, :1].expand_as(loss_fn.rpq_codebook))
    _, stats = loss_fn(feats, lengths, enc.view())
    assert stats["code_entropy"].item() == 0.0 and stats["code_usage"].item() == pytest.approx(1 / 16)


def test_rows_are_independent_of_batch_mates_with_generators(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss(reduction="utterance")
    feats, lengths = _batch()
    seeds = [11, 12, 13]
    torch.manual_seed(0)
    batch_loss, _ = loss_fn(feats, lengths, enc.view(), generators=seeded_generators(seeds))
    alone = []
    for b in range(3):
        torch.manual_seed(100 + b)  # the global RNG must not matter
        n = int(lengths[b])
        loss_b, _ = loss_fn(feats[b : b + 1, :n], lengths[b : b + 1], enc.view(),
                            generators=seeded_generators(seeds[b : b + 1]))
        alone.append(loss_b.item())
    assert batch_loss.item() == pytest.approx(sum(alone) / 3, rel=1e-5)
    # frame-weighted reduction: still deterministic given the generators
    loss_fn = _loss()
    l1, _ = loss_fn(feats, lengths, enc.view(), generators=seeded_generators(seeds))
    torch.manual_seed(99)
    l2, _ = loss_fn(feats, lengths, enc.view(), generators=seeded_generators(seeds))
    assert l1.item() == l2.item()


def test_eval_is_deterministic(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss().eval()
    feats, lengths = _batch()
    torch.manual_seed(1)
    l1, s1 = loss_fn(feats, lengths, enc.view())
    torch.manual_seed(2)
    l2, s2 = loss_fn(feats, lengths, enc.view())
    assert l1.item() == l2.item() and all(s1[k].item() == s2[k].item() for k in STAT_KEYS)


def test_multiple_codebooks(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss(num_codebooks=3)
    feats, lengths = _batch()
    assert len(loss_fn.heads) == 3 and loss_fn.rpq_codebook.shape == (3, 16, 8)
    labels = loss_fn.anchor_labels(feats, 40)
    assert labels.shape == (3, 40, 3)
    assert not torch.equal(labels[..., 0], labels[..., 1])  # independent quantizers
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert torch.isfinite(loss)
    loss.backward()
    assert all(h.weight.grad.abs().sum() > 0 for h in loss_fn.heads)


def test_no_mask_possible_gives_zero_loss(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss(mask_span=5)
    feats, lengths = _batch((12, 16))  # 3-4 encoder frames < one span
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert loss.item() == 0.0 and stats["mask_frac"].item() == 0.0
    loss.backward()


def test_subsampling_mismatch_raises(make_encoder):
    enc = make_encoder(F_IN, D, 2)
    feats, lengths = _batch()
    with pytest.raises(ValueError, match="subsampling"):
        _loss()(feats, lengths, enc.view())


def test_overfits_fixed_batch(make_encoder, overfit, piecewise_constant_batch):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss()
    # piecewise-constant features: a masked frame's label is predictable from its neighbours
    feats, lengths = piecewise_constant_batch(F_IN)
    before, after = overfit(loss_fn, enc, feats, lengths, steps=30)
    assert after < 0.7 * before, (before, after)
