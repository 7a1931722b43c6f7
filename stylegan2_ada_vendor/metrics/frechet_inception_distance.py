"""Frechet Inception Distance (FID): the Frechet distance between Gaussians fitted to detector
features of real and generated images (Heusel et al., "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium", NeurIPS 2017)."""
import warnings

import numpy as np
import scipy.linalg

from metrics import metric_utils

#----------------------------------------------------------------------------

def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    :param mu1, mu2: means [D].
    :param sigma1, sigma2: covariances [D, D].
    :return: float (real part; the matrix square root may carry round-off imaginary parts).
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Covariances from fewer samples than feature dimensions are singular by construction;
        # their product still has the square root FID needs, so scipy's warning is only noise.
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
        s = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.real(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(s)))

def compute_fid(opts, max_real, num_gen):
    """FID between `max_real` dataset images (None = all) and `num_gen` generated images.
    :return: float on rank 0, NaN on other ranks."""
    detector_kwargs = dict(return_features=True)  # NVIDIA's detectors: 2048-d pool features.

    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts=opts, detector_url=opts.detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=0, capture_mean_cov=True, max_items=max_real).get_mean_cov()

    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts=opts, detector_url=opts.detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, capture_mean_cov=True, max_items=num_gen).get_mean_cov()

    if opts.rank != 0:
        return float('nan')
    return frechet_distance(mu_gen, sigma_gen, mu_real, sigma_real)

#----------------------------------------------------------------------------
