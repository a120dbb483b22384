"""Gradient routing of the bilevel model: the invariants of BL-JUST's update."""
import pytest
import torch

from espnet_bilevel.testing.task_helpers import build_tiny_model


def _batch(seed=0, b=3, n_unlab=4):
    g = torch.Generator().manual_seed(seed)
    lab_len = torch.tensor([16000, 12000, 9000][:b])
    unlab_len = torch.tensor([15000, 14000, 11000, 8000][:n_unlab])
    speech = torch.randn(b, int(lab_len.max()), generator=g) * 0.1
    text = torch.randint(3, 11, (b, 6), generator=g)
    text_lengths = torch.tensor([6, 4, 5][:b])
    for i, n in enumerate(text_lengths):
        text[i, n:] = -1
    unlab = torch.randn(n_unlab, int(unlab_len.max()), generator=g) * 0.1
    return dict(
        speech=speech, speech_lengths=lab_len, text=text, text_lengths=text_lengths,
        speech_unlab=unlab, speech_unlab_lengths=unlab_len,
    )


def _grads(model, sup_weight, ssl_weight, batch, seed=123):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same random CPC split points / masks in every call
    loss, _, _ = model(**batch, sup_weight=sup_weight, ssl_weight=ssl_weight)
    loss.backward()
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


@pytest.fixture(params=["cpc", "w2v2"])
def model(request, tmp_path, tiny_corpus):
    conf = {"cpc": {"context_frames": 24, "future_frames": 16, "prediction_steps": 2},
            "w2v2": {"mask_prob": 0.4, "mask_span": 2, "num_negatives": 5, "final_dim": 8,
                     "codebook_entries": 8}}[request.param]
    m, _ = build_tiny_model(tmp_path, tiny_corpus["token_list"], ssl_loss=request.param,
                            ssl_loss_conf=conf)
    m.train()
    return m


def test_parameter_groups_partition_the_model(model):
    groups = model.parameter_groups()
    names = {g: {n for n, _ in ps} for g, ps in groups.items()}
    assert all(names.values()), names
    assert set.union(*names.values()) == {n for n, _ in model.named_parameters()}
    assert all(n.startswith("ssl_loss.") for n in names["eta"])
    assert all(n.startswith("ctc.") for n in names["phi"])
    assert any(n.startswith("encoder.") for n in names["theta"])


def test_joint_step_gradients_are_bljust_updates(model):
    """One backward of f + γg gives θ: ∇f + γ∇g, φ: ∇f (never ∇g), η: γ∇g (never ∇f)."""
    batch, gamma = _batch(), 0.7
    g_joint = _grads(model, 1.0, gamma, batch)
    g_f = _grads(model, 1.0, 0.0, batch)
    g_g = _grads(model, 0.0, 1.0, batch)
    for name, p in model.named_parameters():
        group = model.parameter_group_of(name)
        if group == "phi":
            assert g_g[name] is None, f"{name} received a gradient from the SSL loss"
            torch.testing.assert_close(g_joint[name], g_f[name], rtol=1e-5, atol=1e-5)
        elif group == "eta":
            assert g_f[name] is None, f"{name} received a gradient from the supervised loss"
            if g_g[name] is not None:  # e.g. an unused codebook row has no gradient at all
                torch.testing.assert_close(g_joint[name], gamma * g_g[name], rtol=1e-5, atol=1e-5)
        else:
            if g_f[name] is None and g_g[name] is None:
                continue
            expected = (g_f[name] if g_f[name] is not None else 0) + gamma * (
                g_g[name] if g_g[name] is not None else 0
            )
            torch.testing.assert_close(g_joint[name], expected, rtol=1e-4, atol=1e-5)
    enc = [n for n in g_joint if n.startswith("encoder.") and g_joint[n] is not None]
    assert enc and any(g_g[n] is not None and g_g[n].abs().sum() > 0 for n in enc)


def test_level_with_zero_weight_is_not_computed(model):
    grads = _grads(model, 1.0, 0.0, _batch())
    assert all(grads[n] is None for n in grads if n.startswith("ssl_loss."))
    grads = _grads(model, 0.0, 1.0, _batch())
    assert all(grads[n] is None for n in grads if n.startswith("ctc."))


def test_stock_call_behaves_like_espnet_asr_model(model):
    from espnet2.asr.espnet_model import ESPnetASRModel

    batch = _batch()
    model.eval()
    with torch.no_grad():
        ours = model(batch["speech"], batch["speech_lengths"], batch["text"].clone(),
                     batch["text_lengths"])
        stock = ESPnetASRModel.forward(model, batch["speech"], batch["speech_lengths"],
                                       batch["text"].clone(), batch["text_lengths"])
    assert isinstance(ours, tuple) and len(ours) == 3
    torch.testing.assert_close(ours[0], stock[0])
    assert set(ours[1]) == set(stock[1])


def test_validation_reports_supervised_and_ssl_losses(model):
    b = _batch()
    model.eval()
    loss, stats, weight = model.validation_forward(
        b["speech"], b["speech_lengths"], b["text"].clone(), b["text_lengths"]
    )
    assert {"loss", "loss_ctc", "cer_ctc", "loss_ssl"} <= set(stats)
    assert torch.isfinite(stats["loss_ssl"]) and int(weight) == 3
    torch.testing.assert_close(loss, stats["loss_ctc"])


def test_encoder_output_lengths_match_the_encoder(model):
    feats = torch.randn(3, 57, model._encoder_input_size())
    lengths = torch.tensor([57, 40, 23])
    _, out_lens, _ = model._encode_feats(feats, lengths)
    assert torch.equal(model.encoder_output_lengths(lengths), out_lens)
    assert model.subsampling_factor() == 4


def test_ssl_step_without_ssl_head_is_a_clear_error(tmp_path, tiny_corpus):
    m, _ = build_tiny_model(tmp_path, tiny_corpus["token_list"], ssl_loss=None)
    with pytest.raises(RuntimeError, match="no ssl_loss"):
        m(**_batch(), sup_weight=1.0, ssl_weight=0.5)
