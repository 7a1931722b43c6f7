"""Kernel Inception Distance (KID): the squared maximum mean discrepancy between detector features
of real and generated images under the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3, estimated
without bias and averaged over random subsets (Binkowski et al., "Demystifying MMD GANs", ICLR 2018)."""
import numpy as np

from metrics import metric_utils

#----------------------------------------------------------------------------

def kernel_distance(real_features, gen_features, num_subsets, max_subset_size, seed=0):
    """Unbiased MMD^2 estimate with the cubic polynomial kernel, averaged over subsets.

    :param real_features: array [N_real, D].
    :param gen_features: array [N_gen, D].
    :param num_subsets: number of random subset pairs to average over.
    :param max_subset_size: subset size cap m (each subset is drawn without replacement).
    :return: float.
    """
    real = np.asarray(real_features, dtype=np.float64)
    gen = np.asarray(gen_features, dtype=np.float64)
    n = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    assert m >= 2, 'KID needs at least two real and two generated samples'
    rnd = np.random.RandomState(seed)
    total = 0.0
    for _subset in range(num_subsets):
        x = gen[rnd.choice(gen.shape[0], m, replace=False)]
        y = real[rnd.choice(real.shape[0], m, replace=False)]
        kxx = (x @ x.T / n + 1) ** 3
        kyy = (y @ y.T / n + 1) ** 3
        kxy = (x @ y.T / n + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))  # Pairs i != j only.
        total += within - 2 * kxy.mean()
    return float(total / num_subsets)

def compute_kid(opts, max_real, num_gen, num_subsets, max_subset_size):
    """KID between `max_real` dataset images (None = all) and `num_gen` generated images.
    :return: float on rank 0, NaN on other ranks."""
    detector_kwargs = dict(return_features=True)

    real_features = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=opts.detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real).get_all()

    gen_features = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=opts.detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen).get_all()

    if opts.rank != 0:
        return float('nan')
    return kernel_distance(real_features, gen_features, num_subsets, max_subset_size)

#----------------------------------------------------------------------------
