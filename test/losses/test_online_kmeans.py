"""The online k-means codebook and the BEST-RQ / BiRQ anchor labels it gives (quantizer: online_kmeans)."""
import pytest
import torch

from espnet_bilevel.losses.bestrq import BestRQLoss
from espnet_bilevel.losses.birq import BiRQLoss
from espnet_bilevel.losses.online_kmeans import OnlineKMeansQuantizer, kmeans_pp_init, squared_distances
from padded_batches import random_padded_batch

F_IN, D, S = 8, 16, 4
CENTERS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def _blobs(n_per=50, seed=0, std=0.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([c + std * torch.randn(n_per, 2, generator=g) for c in CENTERS])
    return x[torch.randperm(x.size(0), generator=g)]


def test_seeding_finds_the_clusters_and_is_seeded():
    x = _blobs()
    q = OnlineKMeansQuantizer(2, 4, update_steps=3, seed=5)
    q.observe(x, training=True)
    assert q.seeded and not q.frozen and int(q.num_updates) == 1
    # every true center has a centroid next to it, and each blob gets one label
    d = squared_distances(CENTERS, q.centroids).sqrt()
    assert d.min(dim=1).values.max() < 0.5
    labels = q.assign(x)
    for c in range(4):
        near = squared_distances(x, CENTERS[c : c + 1])[:, 0] < 9.0
        assert labels[near].unique().numel() == 1
    assert float(q.counts.sum()) == x.size(0)
    # same seed + same batch = same codebook, whatever the global RNG does
    torch.manual_seed(1)
    r = OnlineKMeansQuantizer(2, 4, update_steps=3, seed=5)
    torch.manual_seed(2)
    r.observe(x, training=True)
    assert torch.equal(q.centroids, r.centroids) and torch.equal(q.counts, r.counts)


def test_refinement_is_a_running_mean_then_frozen():
    q = OnlineKMeansQuantizer(2, 2, update_steps=2, seed_lloyd_iters=0)
    first = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    q.observe(first, training=True)  # two frames, two clusters: the centroids are the frames
    assert torch.equal(q.centroids.sort(dim=0).values, first.sort(dim=0).values)
    assert torch.equal(q.counts, torch.ones(2))
    i0 = int(q.assign(first[:1]))
    q.observe(torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]]), training=True)
    # cluster at 0 gets two frames at 1: mean of {0, 1, 1} = 2/3; cluster at 4 gets 3: 3.5
    assert torch.allclose(q.centroids[i0], torch.tensor([2.0 / 3.0, 0.0]))
    assert torch.allclose(q.centroids[1 - i0], torch.tensor([3.5, 0.0]))
    assert q.counts[i0] == 3 and q.counts[1 - i0] == 2 and q.frozen
    before = q.centroids.clone()
    q.observe(torch.tensor([[100.0, 0.0]]), training=True)  # frozen: nothing moves
    assert torch.equal(q.centroids, before) and int(q.num_updates) == 2


def test_eval_batches_seed_but_never_refine():
    x = _blobs()
    q = OnlineKMeansQuantizer(2, 4, update_steps=10)
    q.observe(x, training=False)  # labels need a codebook, so an eval batch may seed it
    assert q.seeded
    before = q.centroids.clone()
    q.observe(x + 3.0, training=False)
    assert torch.equal(q.centroids, before) and int(q.num_updates) == 1
    q.observe(x + 3.0, training=True)
    assert not torch.equal(q.centroids, before) and int(q.num_updates) == 2


def test_fewer_frames_than_clusters_gives_distinct_centroids():
    q = OnlineKMeansQuantizer(3, 8, seed=0)
    q.observe(torch.randn(3, 3), training=True)
    assert torch.unique(q.centroids, dim=0).size(0) == 8
    pp = kmeans_pp_init(torch.zeros(5, 2), 3, torch.Generator().manual_seed(0))  # all rows equal
    assert pp.shape == (3, 2)


def test_bad_options():
    with pytest.raises(ValueError, match="update_steps"):
        OnlineKMeansQuantizer(2, 4, update_steps=0)
    with pytest.raises(ValueError, match="num_clusters"):
        OnlineKMeansQuantizer(2, 1)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        BestRQLoss(F_IN, D, quantizer="kmeans")
    with pytest.raises(ValueError, match="num_codebooks: 1"):
        BestRQLoss(F_IN, D, quantizer="online_kmeans", num_codebooks=2)


def _batch(lengths=(160, 120, 100), seed=1):
    return random_padded_batch(F_IN, lengths, seed)


def test_bestrq_kmeans_labels_are_the_nearest_centroid_and_padding_never_counts(make_encoder):
    enc = make_encoder(F_IN, D, S)
    loss_fn = BestRQLoss(F_IN, D, subsampling=S, codebook_size=8, quantizer="online_kmeans",
                         kmeans_update_steps=2)
    assert not hasattr(loss_fn, "rpq_projection")
    assert not any("kmeans" in n for n, _ in loss_fn.named_parameters())
    feats, lengths = _batch()
    loss, stats = loss_fn(feats, lengths, enc.view())
    assert torch.isfinite(loss) and loss.item() > 0 and stats["code_usage"] > 0
    loss.backward()
    assert all(p.grad is not None for p in loss_fn.heads.parameters())
    # the seeding batch's valid frames only: the same utterances padded further seed the same codebook
    t_out = 40
    stacked = loss_fn.stack_frames(feats, t_out)
    valid = torch.arange(t_out)[None, :] < (lengths // S)[:, None]
    alone = OnlineKMeansQuantizer(F_IN * S, 8, 2)
    alone.observe(stacked[valid], training=True)
    assert torch.equal(alone.centroids, loss_fn.kmeans.centroids)
    padded = torch.cat([feats, torch.zeros(3, 40, F_IN)], dim=1)
    again = BestRQLoss(F_IN, D, subsampling=S, codebook_size=8, quantizer="online_kmeans",
                       kmeans_update_steps=2)
    again(padded, lengths, enc.view())
    assert torch.equal(again.kmeans.centroids, loss_fn.kmeans.centroids)
    # labels: nearest centroid of each stacked frame, and a reloaded state gives the same ones
    loss_fn.eval()  # (a training-mode call would refine the codebook first)
    labels = loss_fn.anchor_labels(feats, t_out)[..., 0]
    expect = squared_distances(stacked.reshape(-1, F_IN * S), loss_fn.kmeans.centroids).argmin(-1)
    assert torch.equal(labels.reshape(-1), expect)
    clone = BestRQLoss(F_IN, D, subsampling=S, codebook_size=8, quantizer="online_kmeans",
                       kmeans_update_steps=2)
    clone.load_state_dict(loss_fn.state_dict())
    clone.eval()
    assert torch.equal(clone.anchor_labels(feats, t_out)[..., 0], labels)
    assert int(clone.kmeans.num_updates) == 1


def test_birq_with_kmeans_anchor_trains(make_encoder):
    enc = make_encoder(F_IN, D, S, num_layers=2)
    loss_fn = BiRQLoss(F_IN, D, subsampling=S, codebook_size=8, enhanced_codebook_size=8,
                       enhanced_layer=1, quantizer="online_kmeans", kmeans_update_steps=3)
    feats, lengths = _batch()
    for step in range(4):
        loss, stats = loss_fn(feats, lengths, enc.view())
        assert torch.isfinite(loss)
        loss.backward()
    assert loss_fn.kmeans.frozen and int(loss_fn.kmeans.num_updates) == 3
    assert "kmeans.centroids" in loss_fn.state_dict()
