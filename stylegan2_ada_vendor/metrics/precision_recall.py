"""Improved precision and recall (Kynkaanniemi et al., "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS 2019). Each feature set is a manifold: the union of balls
around its points, each ball reaching the point's k-th nearest neighbour. Precision is the share of
generated samples inside the real manifold; recall the share of real samples inside the generated
one. Distances are computed in blocks of [row_batch_size, col_batch_size], keeping only the k + 1
smallest per row, so memory stays bounded for any number of samples.

Upstream StyleGAN2-ADA computes these on VGG16 features; here the detector is the metric options'
(the Inception by default; pass NVIDIA's vgg16.pt as detector_url for upstream's numbers)."""
import torch

from metrics import metric_utils

#----------------------------------------------------------------------------

def _is_distributed(num_gpus):
    return num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()

def _all_gather_cat(x, num_gpus, dim):
    """Concatenates `x` of every rank along `dim` (x itself without a process group)."""
    if not _is_distributed(num_gpus):
        return x
    ys = [torch.empty_like(x) for _ in range(num_gpus)]
    torch.distributed.all_gather(ys, x.contiguous())
    return torch.cat(ys, dim=dim)

def kth_neighbour_radii(features, nhood_size, row_batch_size, col_batch_size, num_gpus=1, rank=0):
    """Distance from every point to its `nhood_size`-th nearest other point in the same set.

    Column blocks are shared out over the ranks; each keeps a running set of the smallest distances
    per row, and the ranks' candidates are merged at the end of each row block.
    :param features: tensor [N, D], identical on every rank, N > nhood_size.
    :return: tensor [N] (the point itself counts as its 0-th neighbour, at distance 0).
    """
    num = features.shape[0]
    assert num > nhood_size, f'precision/recall with k={nhood_size} needs more than {nhood_size} samples'
    keep = nhood_size + 1
    radii = []
    for rows in features.split(row_batch_size):
        best = torch.full([rows.shape[0], keep], float('inf'), device=features.device)
        for j, cols in enumerate(features.split(col_batch_size)):
            if j % num_gpus == rank:
                cand = torch.cat([best, torch.cdist(rows, cols)], dim=1)
                best = cand.topk(keep, dim=1, largest=False).values
        best = _all_gather_cat(best, num_gpus, dim=1).topk(keep, dim=1, largest=False).values
        radii.append(best[:, nhood_size])
    return torch.cat(radii)

def inside_manifold(probes, manifold, radii, row_batch_size, col_batch_size, num_gpus=1, rank=0):
    """Whether each probe lies within radius[i] of some manifold point i.

    :param probes: tensor [P, D]. :param manifold: tensor [M, D]. :param radii: tensor [M].
    :return: bool tensor [P].
    """
    inside = []
    for rows in probes.split(row_batch_size):
        hit = torch.zeros([rows.shape[0]], dtype=torch.bool, device=probes.device)
        for j, (cols, col_radii) in enumerate(zip(manifold.split(col_batch_size), radii.split(col_batch_size))):
            if j % num_gpus == rank:
                hit |= (torch.cdist(rows, cols) <= col_radii[None, :]).any(dim=1)
        hit = _all_gather_cat(hit[None].to(torch.uint8), num_gpus, dim=0).amax(dim=0).to(torch.bool)
        inside.append(hit)
    return torch.cat(inside)

def precision_recall(real_features, gen_features, nhood_size, row_batch_size, col_batch_size, num_gpus=1, rank=0):
    """:param real_features: tensor [N_real, D]. :param gen_features: tensor [N_gen, D].
    :return: (precision, recall) floats in [0, 1]."""
    results = []
    for manifold, probes in [(real_features, gen_features), (gen_features, real_features)]:
        radii = kth_neighbour_radii(manifold, nhood_size, row_batch_size, col_batch_size, num_gpus, rank)
        inside = inside_manifold(probes, manifold, radii, row_batch_size, col_batch_size, num_gpus, rank)
        results.append(float(inside.to(torch.float32).mean()))
    return results[0], results[1]

def compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    """Precision and recall between `max_real` dataset images (None = all) and `num_gen`
    generated images, with k = `nhood_size` nearest neighbours.
    :return: (precision, recall) on rank 0, NaNs on other ranks."""
    detector_kwargs = dict(return_features=True)

    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=opts.detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real).get_all_torch().to(opts.device)

    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=opts.detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen).get_all_torch().to(opts.device)

    precision, recall = precision_recall(real_features, gen_features, nhood_size, row_batch_size, col_batch_size,
        num_gpus=opts.num_gpus, rank=opts.rank)
    if opts.rank != 0:
        return float('nan'), float('nan')
    return precision, recall

#----------------------------------------------------------------------------
