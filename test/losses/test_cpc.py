import pytest
import torch

from espnet_bilevel.losses.cpc import CPCLoss, gather_segments
from padded_batches import random_padded_batch

F_IN, D = 8, 16


def _loss(**kw):
    opts = dict(context_frames=32, future_frames=16, prediction_steps=3)
    opts.update(kw)
    return CPCLoss(input_size=F_IN, encoder_output_size=D, **opts)


def _batch(lengths=(80, 64, 60, 48), seed=1):
    return random_padded_batch(F_IN, lengths, seed)


def test_gather_segments():
    feats = torch.arange(2 * 6, dtype=torch.float).view(2, 6, 1)
    seg = gather_segments(feats, torch.tensor([1, 3]), torch.tensor([3, 2]))
    assert seg[..., 0].tolist() == [[1.0, 2.0, 3.0], [9.0, 10.0, 0.0]]


@pytest.mark.parametrize("predictor,num_negatives", [("per_offset", None), ("chained", None), ("per_offset", 5)])
def test_finite_loss_and_gradients_reach_theta_and_eta(make_encoder, predictor, num_negatives):
    enc = make_encoder(F_IN, D)
    loss_fn = _loss(predictor=predictor, num_negatives=num_negatives)
    feats, lengths = _batch()
    torch.manual_seed(0)
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(stats) == {"acc", "used_frac"}
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())
    assert stats["used_frac"].item() == 1.0
    loss.backward()
    for name, p in list(enc.named_parameters()) + list(loss_fn.named_parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_two_encodes_and_no_future_leak_into_context(make_encoder):
    enc = make_encoder(F_IN, D)
    loss_fn = _loss()
    feats, lengths = _batch()
    captured = []
    loss_fn.predictors[0].register_forward_pre_hook(lambda m, inp: captured.append(inp[0].detach().clone()))

    torch.manual_seed(123)
    start, ctx_len, fut_len, used = loss_fn.plan_segments(lengths, enc.view())
    split = start + ctx_len
    assert used.all()
    assert (start >= 0).all() and (split + fut_len <= lengths).all()

    torch.manual_seed(123)
    loss_fn(feats, lengths, enc.view())
    assert len(enc.calls) == 2  # one batch of contexts, one batch of futures
    ctx_in, ctx_in_len, ctx_out1 = enc.calls[0]
    fut_out1 = enc.calls[1][2]
    # the context batch holds exactly the frames [start, split) of each utterance
    for b in range(len(lengths)):
        assert torch.equal(ctx_in[b, : ctx_len[b]], feats[b, start[b] : split[b]])
    assert torch.equal(ctx_in_len, ctx_len)

    # perturb everything from the split point on
    perturbed = feats.clone()
    for b in range(len(lengths)):
        perturbed[b, split[b] :] += 3.0 * torch.randn_like(perturbed[b, split[b] :])
    torch.manual_seed(123)
    loss_fn(perturbed, lengths, enc.view())
    assert torch.equal(enc.calls[2][2], ctx_out1)  # context encodings unchanged
    assert torch.equal(captured[1], captured[0])  # what the predictor saw is unchanged
    assert not torch.allclose(enc.calls[3][2], fut_out1)  # the future did change

    # sanity of the check itself: encoding the whole utterance *would* leak with this encoder
    full1, _, _ = enc(feats, lengths)
    full2, _, _ = enc(perturbed, lengths)
    assert not torch.allclose(full1[0, :2], full2[0, :2])


def test_targets_are_not_detached(make_encoder):
    # gradient reaches the input frames of the future window, i.e. flows through the targets
    enc = make_encoder(F_IN, D)
    loss_fn = _loss()
    feats, lengths = _batch()
    feats.requires_grad_(True)
    torch.manual_seed(5)
    start, ctx_len, fut_len, _ = loss_fn.plan_segments(lengths, enc.view())
    torch.manual_seed(5)
    loss, _ = loss_fn(feats, lengths, enc.view())
    loss.backward()
    b = 0
    split = int(start[b] + ctx_len[b])
    assert feats.grad[b, split : split + 4].abs().sum() > 0
    assert feats.grad[b, split - 4 : split].abs().sum() > 0


def test_short_utterances_shrink_or_skip(make_encoder):
    enc = make_encoder(F_IN, D)
    loss_fn = _loss()
    lengths = torch.tensor([48, 24, 5])
    start, ctx_len, fut_len, used = loss_fn.plan_segments(lengths, enc.view())
    assert ctx_len.tolist()[:2] == [32, 16] and fut_len.tolist()[:2] == [16, 8]
    assert used.tolist() == [True, True, False]
    feats, _ = _batch(tuple(lengths.tolist()))
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert torch.isfinite(loss)
    assert stats["used_frac"].item() == pytest.approx(2 / 3)
    # nothing usable: a zero loss that still backpropagates
    feats, lengths = _batch((5, 6))
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert loss.item() == 0.0 and stats["used_frac"].item() == 0.0
    loss.backward()


def test_eval_is_deterministic(make_encoder):
    enc = make_encoder(F_IN, D)
    loss_fn = _loss(num_negatives=4).eval()
    feats, lengths = _batch()
    l1, s1 = loss_fn(feats, lengths, enc.view())
    torch.manual_seed(999)
    l2, s2 = loss_fn(feats, lengths, enc.view())
    assert l1.item() == l2.item() and s1["acc"].item() == s2["acc"].item()


def test_overfits_fixed_batch(make_encoder, overfit):
    enc = make_encoder(F_IN, D)
    loss_fn = _loss()
    feats, lengths = _batch()
    before, after = overfit(loss_fn, enc, feats, lengths, steps=40)
    assert after < 0.7 * before, (before, after)
