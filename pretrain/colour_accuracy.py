"""Colour accuracy as the colour-classification literature scores it: the share of pixels whose colour lies within
a distance of the truth, averaged over distances (area under the curve), raw and class-rebalanced.

Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016, Table 1, "AuC"): thresholds from 0 to 150 in
Lab a/b units; the *rebalanced* score weights each pixel by the inverse frequency of its true colour bin, so the
near-gray pixels that fill most photos do not dominate and the gray answer scores low (58.0 against their
rebalanced classifier's 67.3 on ImageNet; 89.1 against 89.5 raw). It is the classification counterpart of chroma
L1, which rewards the average (gray) colour. Here in the project's chroma space (`models.colour_bins`: Cb/Cr in
[-1, 1], bin step 0.1 standing for Zhang et al.'s 10 a/b units): thresholds 0 to 1.5 in steps of 0.01, bins the
21 × 21 grid, frequencies those of the scored pixels themselves (the rebalanced score is then the mean over the
colour bins present of each bin's accuracy curve).
"""

from surrogate_supervision.models.colour_bins import GRID_STEP, NUM_BINS, nearest_bins

import numpy as np

THRESHOLDS = np.round(np.arange(0.0, 15 * GRID_STEP + 1e-9, GRID_STEP / 10), 6)  # 151 distances, 0 … 1.5


def bin_sums(fake_chroma, real_chroma):
    """(NUM_BINS, 2): per true colour bin, the summed share of thresholds each pixel is within, and the pixel
    count; sums over batches add up, so a split can be scored batch by batch (`auc_from_bin_sums`)."""
    fake = np.asarray(fake_chroma, np.float64).reshape(-1, 2)
    real = np.asarray(real_chroma, np.float64).reshape(-1, 2)
    distance = np.linalg.norm(fake - real, axis=1)
    # the share of thresholds at or above each pixel's distance, with a tolerance far below the thresholds' step:
    # chroma comes in float32, so an exact colour can land 1e-7 away
    within = (len(THRESHOLDS) - np.searchsorted(THRESHOLDS, distance - 1e-6, side="left")) / len(THRESHOLDS)
    bins = nearest_bins(real)
    return np.stack([np.bincount(bins, within, NUM_BINS), np.bincount(bins, minlength=NUM_BINS)], axis=1)


def auc_from_bin_sums(sums):
    """{"auc": raw, "auc_rebalanced": rebalanced} from `bin_sums`: the raw score pools every pixel, the
    rebalanced one averages the bins present (each pixel weighted by the inverse of its bin's count)."""
    within, count = np.asarray(sums, np.float64).T
    present = count > 0
    return {"auc": float(within.sum() / count.sum()),
            "auc_rebalanced": float(np.mean(within[present] / count[present]))}


def accuracy_auc(fake_chroma, real_chroma):
    """(…, 2) predicted and true chroma → {"auc": raw, "auc_rebalanced": rebalanced}, each in [0, 1]
    (1: every pixel exact; a pixel at distance d counts for the share of thresholds ≥ d)."""
    return auc_from_bin_sums(bin_sums(fake_chroma, real_chroma))
