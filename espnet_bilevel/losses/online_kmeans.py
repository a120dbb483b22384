"""A k-means codebook over the input features, fitted online from the first training batches.

The BEST-RQ anchor labels come from a *random* projection and codebook. HuBERT's first iteration
uses k-means clusters of MFCC frames instead, fitted offline. This quantizer gives the BEST-RQ /
BiRQ losses (``ssl_loss_conf.quantizer: online_kmeans``) k-means targets on the very features the
encoder sees, without an extra recipe stage:

1. **Seeding**: the first batch the loss sees seeds the centroids by k-means++ on its valid frames
   followed by a few Lloyd iterations on them (seeded by ``seed``; with fewer frames than clusters,
   the frames and jittered copies of them are the centroids, so that every centroid is distinct).
2. **Refinement**: each of the next ``update_steps - 1`` *training* batches moves every centroid
   towards the mean of the frames assigned to it with step ``n_batch / n_total`` (mini-batch
   k-means, Sculley 2010): a centroid is the running mean of all the frames it was ever assigned.
3. **Frozen**: after ``update_steps`` batches the codebook never changes again, so from then on a
   frame's label is a fixed function of the frame, like HuBERT's offline labels.

Everything is a buffer (centroids, counts, number of updates): checkpoints carry it, so a resumed
run continues with the same codebook and a decoded / averaged model does not refit. Nothing here
is a parameter, so no optimizer ever sees it, and labels never carry a gradient.
With DDP every rank updates from its own batch and DDP's buffer broadcast makes rank 0's codebook
the one all ranks use from the next step on.
"""
from typing import Optional

import torch


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(N, d), (V, d) -> (N, V) squared Euclidean distances (clamped at 0 against round-off)."""
    d = (x * x).sum(-1, keepdim=True) - 2.0 * x @ centroids.t() + (centroids * centroids).sum(-1)[None, :]
    return d.clamp(min=0.0)


def kmeans_pp_init(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: k distinct rows of x, each drawn with probability ∝ squared distance
    to the nearest one chosen so far (x must have at least k rows)."""
    first = int(torch.randint(x.size(0), (1,), generator=generator))
    chosen = [first]
    nearest = squared_distances(x, x[first : first + 1])[:, 0]
    for _ in range(1, k):
        # a chosen row's own distance can come out as round-off instead of 0: exclude it
        weights = nearest.clone()
        weights[chosen] = 0.0
        if float(weights.sum()) <= 0.0:  # every row coincides with a chosen one: any unchosen row
            weights = torch.ones_like(nearest)
            weights[chosen] = 0.0
        idx = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(idx)
        nearest = torch.minimum(nearest, squared_distances(x, x[idx : idx + 1])[:, 0])
    return x[chosen].clone()


class OnlineKMeansQuantizer(torch.nn.Module):
    """Nearest-centroid labels of ``dim``-vectors with a codebook of ``num_clusters`` entries.

    Args:
        dim: vector dimension (BEST-RQ: features × subsampling, one stacked vector per encoder frame).
        num_clusters: codebook size V.
        update_steps: training batches that shape the codebook (the seeding batch included);
            afterwards it is frozen. Must be >= 1.
        seed: seed of the k-means++ draws and the jitter.
        seed_lloyd_iters: Lloyd iterations on the seeding batch after k-means++.
    """

    def __init__(self, dim: int, num_clusters: int, update_steps: int = 100, seed: int = 0,
                 seed_lloyd_iters: int = 10):
        super().__init__()
        if dim < 1 or num_clusters < 2:
            raise ValueError(f"need dim >= 1 and num_clusters >= 2, got {dim} and {num_clusters}")
        if update_steps < 1:
            raise ValueError(f"update_steps must be >= 1, got {update_steps}")
        if seed_lloyd_iters < 0:
            raise ValueError(f"seed_lloyd_iters must be >= 0, got {seed_lloyd_iters}")
        self.dim = dim
        self.num_clusters = num_clusters
        self.update_steps = update_steps
        self.seed = seed
        self.seed_lloyd_iters = seed_lloyd_iters
        self.register_buffer("centroids", torch.zeros(num_clusters, dim))
        self.register_buffer("counts", torch.zeros(num_clusters))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def seeded(self) -> bool:
        return int(self.num_updates) > 0

    @property
    def frozen(self) -> bool:
        return int(self.num_updates) >= self.update_steps

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) -> (N,) long index of the nearest centroid."""
        if x.numel() == 0:
            return torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
        return squared_distances(x.float(), self.centroids.float()).argmin(dim=-1)

    @torch.no_grad()
    def observe(self, x: torch.Tensor, training: bool) -> None:
        """Let the (N, dim) valid vectors of one batch shape the codebook.

        Seeds it from the first batch seen (in any mode: labels need a codebook), refines it
        with training batches until ``update_steps`` batches have been used, then does nothing.
        """
        x = x.detach().float()
        if x.size(0) == 0 or self.frozen or (self.seeded and not training):
            return
        if not self.seeded:
            self._seed_from(x)
        else:
            labels = self.assign(x)
            sums = torch.zeros_like(self.centroids).index_add_(0, labels, x)
            n = torch.bincount(labels, minlength=self.num_clusters).to(self.counts.dtype)
            total = self.counts + n
            hit = n > 0
            # running mean: c <- c + (sum - n c) / (N_old + n)
            step = (sums[hit] - n[hit, None] * self.centroids[hit]) / total[hit, None]
            self.centroids[hit] += step
            self.counts.copy_(total)
        self.num_updates += 1

    def _seed_from(self, x: torch.Tensor) -> None:
        gen = torch.Generator().manual_seed(int(self.seed))
        x = x.cpu()
        if x.size(0) < self.num_clusters:
            extra = x[torch.randint(x.size(0), (self.num_clusters - x.size(0),), generator=gen)]
            scale = 1e-3 * (float(x.std()) if x.size(0) > 1 else 1.0) + 1e-6
            x = torch.cat([x, extra + scale * torch.randn(extra.shape, generator=gen)], dim=0)
        centroids = kmeans_pp_init(x, self.num_clusters, gen)
        # With no more frames than clusters every frame is a centroid already; Lloyd steps could
        # only merge a frame with its jittered copy through round-off in the distances.
        lloyd_iters = self.seed_lloyd_iters if x.size(0) > self.num_clusters else 0
        for _ in range(lloyd_iters):
            labels = squared_distances(x, centroids).argmin(dim=-1)
            n = torch.bincount(labels, minlength=self.num_clusters).float()
            sums = torch.zeros_like(centroids).index_add_(0, labels, x)
            hit = n > 0  # an empty cluster keeps its seed
            centroids[hit] = sums[hit] / n[hit, None]
        labels = squared_distances(x, centroids).argmin(dim=-1)
        self.centroids.copy_(centroids.to(self.centroids.device))
        self.counts.copy_(torch.bincount(labels, minlength=self.num_clusters).to(self.counts))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_clusters={self.num_clusters}, "
                f"update_steps={self.update_steps}, seed={self.seed}")


__all__ = ["OnlineKMeansQuantizer", "kmeans_pp_init", "squared_distances"]
