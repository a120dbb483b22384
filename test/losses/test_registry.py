from espnet_bilevel.losses import AbsSSLLoss, BestRQLoss, BiRQLoss, CPCLoss, Wav2Vec2Loss, ssl_loss_choices


def test_registry_names_and_construction():
    assert ssl_loss_choices.name == "ssl_loss"
    assert ssl_loss_choices.default == "cpc"
    assert ssl_loss_choices.get_class("cpc") is CPCLoss
    assert ssl_loss_choices.get_class("w2v2") is Wav2Vec2Loss
    assert ssl_loss_choices.get_class("bestrq") is BestRQLoss
    assert ssl_loss_choices.get_class("birq") is BiRQLoss
    for name in ("cpc", "w2v2", "bestrq", "birq"):
        loss = ssl_loss_choices.get_class(name)(input_size=8, encoder_output_size=16)
        assert isinstance(loss, AbsSSLLoss)
