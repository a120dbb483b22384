import math

import pytest
import torch

from espnet_bilevel.losses.wav2vec2 import Wav2Vec2Loss, code_perplexity, diversity_loss
from padded_batches import random_padded_batch

F_IN, D, S = 8, 16, 4
STAT_KEYS = {"acc", "contrastive_loss", "diversity_loss", "code_perplexity", "prob_perplexity", "gumbel_temp", "mask_frac"}


def _loss(**kw):
    opts = dict(final_dim=16, codebook_entries=8, codebook_groups=2, num_negatives=10, subsampling=S)
    opts.update(kw)
    torch.manual_seed(42)
    return Wav2Vec2Loss(input_size=F_IN, encoder_output_size=D, **opts)


def _batch(lengths=(160, 120, 100), seed=1):
    return random_padded_batch(F_IN, lengths, seed)


def test_finite_loss_stats_and_gradients(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss()
    feats, lengths = _batch()
    torch.manual_seed(0)
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(stats) == STAT_KEYS
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())
    assert 0.0 < stats["mask_frac"].item() < 1.0
    assert stats["gumbel_temp"].item() == pytest.approx(2.0)
    expected = stats["contrastive_loss"] + 0.1 * stats["diversity_loss"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    for name, p in list(enc.named_parameters()) + list(loss_fn.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_masked_frames_replaced_by_mask_embedding(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss()
    feats, lengths = _batch()
    torch.manual_seed(7)
    loss_fn(feats, lengths, enc.view())
    seen = enc.calls[0][0]
    torch.manual_seed(7)
    mask_out, mask_in, out_lens = loss_fn.draw_mask(lengths, feats.size(1), enc.view())
    assert torch.equal(out_lens, lengths // S)
    assert mask_in.any() and mask_in.shape == feats.shape[:2]
    # masked input frames carry the mask embedding, all other frames are untouched
    assert torch.equal(seen[mask_in], loss_fn.mask_emb.detach().expand(int(mask_in.sum()), -1))
    assert torch.equal(seen[~mask_in], feats[~mask_in])
    # whole blocks of s input frames per masked encoder frame
    assert torch.equal(mask_in[:, : S * mask_out.size(1)].view(len(lengths), -1, S).all(-1), mask_out)


def test_gumbel_temperature_anneals_and_is_saved(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss(gumbel_temp_decay=0.5)
    feats, lengths = _batch()
    assert "num_updates" in loss_fn.state_dict()
    temps = [loss_fn(feats, lengths, enc.view())[1]["gumbel_temp"].item() for _ in range(4)]
    assert temps == pytest.approx([2.0, 1.0, 0.5, 0.5])
    assert int(loss_fn.num_updates) == 4
    loss_fn.eval()
    loss_fn(feats, lengths, enc.view())
    assert int(loss_fn.num_updates) == 4  # eval passes do not advance the schedule
    restored = _loss(gumbel_temp_decay=0.5)
    assert int(restored.num_updates) == 0
    restored.load_state_dict(loss_fn.state_dict())
    assert int(restored.num_updates) == 4 and restored.gumbel_temperature() == 0.5
    # the paper's schedule: 2.0 * 0.999995**n, floored at 0.5
    paper = _loss()
    assert paper.gumbel_temperature(100_000) == pytest.approx(2.0 * 0.999995**100_000)
    assert paper.gumbel_temperature(10_000_000) == 0.5


def test_eval_is_deterministic(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss().eval()
    feats, lengths = _batch()
    torch.manual_seed(1)
    l1, s1 = loss_fn(feats, lengths, enc.view())
    torch.manual_seed(2)
    l2, s2 = loss_fn(feats, lengths, enc.view())
    assert l1.item() == l2.item()
    assert all(s1[k].item() == s2[k].item() for k in STAT_KEYS)


def test_diversity_loss_hand_computed():
    # N=2 vectors, G=2 groups, V=2 entries
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]], [[math.log(3.0), 0.0], [0.0, 0.0]]])
    # group 0: softmaxes (.5,.5) and (.75,.25) -> mean (.625,.375); group 1 the same by symmetry
    p = [0.625, 0.375]
    ppl_group = math.exp(-sum(x * math.log(x) for x in p))
    expected_ppl = 2 * ppl_group
    expected_loss = (4 - expected_ppl) / 4
    loss, ppl = diversity_loss(logits)
    assert ppl.item() == pytest.approx(expected_ppl, abs=1e-5)
    assert loss.item() == pytest.approx(expected_loss, abs=1e-5)
    # uniform usage: perplexity G*V, loss 0; one entry always: perplexity G, loss (GV-G)/GV
    assert diversity_loss(torch.zeros(3, 2, 4))[0].item() == pytest.approx(0.0, abs=1e-5)
    peaked = torch.tensor([[[50.0, 0.0, 0.0, 0.0]] * 2] * 3)
    assert diversity_loss(peaked)[0].item() == pytest.approx((8 - 2) / 8, abs=1e-5)


def test_code_perplexity_hand_computed():
    codes = torch.tensor([[0, 1], [0, 1], [1, 1], [2, 1]])
    h0 = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert code_perplexity(codes, 4).item() == pytest.approx(math.exp(h0) + 1.0, abs=1e-5)


def test_negatives_with_identical_codes_are_dropped(make_encoder):
    # force every frame onto the same code: no distractor is distinguishable, all are dropped,
    # the contrastive loss is 0 and the diversity loss reports the collapse
    enc = make_encoder(F_IN, D, S)
    loss_fn = _loss().eval()
    with torch.no_grad():
        loss_fn.quantizer.logits_proj.weight.zero_()
        loss_fn.quantizer.logits_proj.bias.zero_()
        loss_fn.quantizer.logits_proj.bias[0] = 100.0
        loss_fn.quantizer.logits_proj.bias[8] = 100.0
    feats, lengths = _batch()
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert stats["contrastive_loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert stats["code_perplexity"].item() == pytest.approx(2.0, abs=1e-4)
    assert stats["diversity_loss"].item() == pytest.approx((16 - 2) / 16, abs=1e-4)


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
    feats, lengths = piecewise_constant_batch(F_IN)
    before, after = overfit(loss_fn, enc, feats, lengths, steps=40)
    assert after < 0.9 * before, (before, after)


def test_inconsistent_output_lengths_are_rejected(make_encoder):
    enc = make_encoder(F_IN, D, S)
    view = enc.view()
    view._lengths_fn = lambda lens: torch.div(lens, S, rounding_mode="floor") - 1  # off by one
    feats, lengths = _batch()
    with pytest.raises(RuntimeError, match="output_lengths"):
        _loss()(feats, lengths, view)
