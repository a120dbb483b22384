"""A tiny bidirectional fake backbone for the SSL-loss tests.

The encoder is a strided Conv1d (kernel = stride = s: one encoder frame per s input frames), a
local Conv1d over neighbouring encoder frames, and a term that mixes the utterance mean into every
frame.  That
makes it *bidirectional* like a Conformer: any frame's output depends on every valid input frame,
so a loss that leaked the future into the context would be caught.  Padding never matters
because only valid frames enter the convolution outputs and the mean.

``num_layers`` > 1 stacks per-frame blocks ``tanh(Linear(h))`` on top, so losses that read
intermediate layers (BiRQ) can be checked layer by layer; with the default 1 the encoder (and its
parameters for a given seed) is exactly the original one-layer encoder.
"""
import pytest
import torch

from espnet_bilevel.losses.abs_ssl_loss import BackboneView


class TinyEncoder(torch.nn.Module):
    def __init__(self, input_size: int, output_size: int, subsampling: int = 4, num_layers: int = 1):
        super().__init__()
        self.s = subsampling
        self.conv = torch.nn.Conv1d(input_size, output_size, kernel_size=subsampling, stride=subsampling)
        # local context across encoder frames, so masked frames can be predicted from neighbours
        self.local = torch.nn.Conv1d(output_size, output_size, kernel_size=5, padding=2)
        self.mix = torch.nn.Linear(output_size, output_size)
        # created last so that the first layer's initial weights do not depend on num_layers
        self.blocks = torch.nn.ModuleList(
            [torch.nn.Linear(output_size, output_size) for _ in range(num_layers - 1)]
        )
        self.calls = []  # (input feats, input lengths, output) of every encode call, for inspection

    def output_lengths(self, lengths):
        return torch.div(lengths, self.s, rounding_mode="floor")

    def forward(self, feats, lengths, return_all_layers=False):
        h = self.conv(feats.transpose(1, 2)).transpose(1, 2)
        out_lens = self.output_lengths(lengths)
        valid = (torch.arange(h.size(1))[None, :] < out_lens[:, None]).unsqueeze(-1)
        h = h * valid  # padding must not reach valid frames through the local conv
        h = h + self.local(h.transpose(1, 2)).transpose(1, 2)
        mean = (h * valid).sum(1) / out_lens.clamp(min=1)[:, None]
        out = torch.tanh(h + self.mix(mean)[:, None, :]) * valid
        layers = [out]
        for block in self.blocks:
            layers.append(torch.tanh(block(layers[-1])) * valid)
        out = layers[-1]
        self.calls.append((feats.detach().clone(), lengths.clone(), out.detach().clone()))
        return out, out_lens, (layers if return_all_layers else None)

    def view(self):
        return BackboneView(
            encode_fn=self.forward,
            input_size=self.conv.in_channels,
            output_size=self.conv.out_channels,
            subsampling=self.s,
            num_layers=1 + len(self.blocks),
            lengths_fn=self.output_lengths,
        )


@pytest.fixture
def make_encoder():
    def _make(input_size=8, output_size=16, subsampling=4, seed=0, num_layers=1):
        torch.manual_seed(seed)
        return TinyEncoder(input_size, output_size, subsampling, num_layers)

    return _make


@pytest.fixture(autouse=True)
def _single_thread():
    """These tensors are tiny: intra-op threads only add synchronization, which on a loaded
    2-core machine made the over-fitting tests ~10x slower.  Restored after each test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _overfit(loss_fn, enc, feats, lengths, steps: int, lr: float = 1e-2):
    """Adam on a fixed batch for ``steps`` steps; returns the eval-mode loss (before, after)."""
    opt = torch.optim.Adam(list(enc.parameters()) + list(loss_fn.parameters()), lr=lr)

    def eval_loss():
        loss_fn.eval()
        with torch.no_grad():
            value = loss_fn(feats, lengths, enc.view())[0].item()
        loss_fn.train()
        return value

    before = eval_loss()
    torch.manual_seed(0)
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = loss_fn(feats, lengths, enc.view())
        loss.backward()
        opt.step()
    return before, eval_loss()


@pytest.fixture
def overfit():
    """The over-fitting sanity check shared by the SSL-loss tests."""
    return _overfit


@pytest.fixture
def piecewise_constant_batch():
    """Features made of 20-frame constant segments plus a little noise: a masked frame is then
    predictable from its unmasked neighbours, as in speech (i.i.d. noise has nothing to learn)."""

    def make(input_size: int):
        g = torch.Generator().manual_seed(1)
        lengths = torch.tensor([160, 120, 100])
        feats = torch.randn(3, 8, input_size, generator=g).repeat_interleave(20, dim=1)
        return feats + 0.1 * torch.randn(3, 160, input_size, generator=g), lengths

    return make
