"""Colour error per segmentation class on a labeled root's test split: does the pretext learn colour where the
gray image determines it?

The whole-image chroma L1 against gray is dominated by pixels whose colour no gray image can tell (on CCP 77 % of
the pixels are background and 16 % clothing, whose colour is a matter of taste). Scored per class, with the labels
the pretext never sees, the same error separates "learned no colour" from "learned the colour that is learnable":
skin has a typical colour, a shirt has not. Two references per class:
- gray (zero chroma), the input itself;
- the class median: the median chroma of the class on the training split, painted on every pixel of the class.
  A colorizer that knew each pixel's class and nothing else could reach it; where it is close to gray, no
  pretext can be asked to beat gray there.
Besides chroma L1, each class gets the colour accuracy AuC, raw and rebalanced (`pretrain/colour_accuracy.py`):
the classification view of the same question.
The test split is the one `finetune/segment.py` tests on and `colorize.py` leaves out of pretraining (same split
seed). Whole images (one centred crop that covers the largest image, padding ignored), so that classes near the
border (footwear, hair) count; scored at the generator's stride-4 grid like `pretrain/holdout.py`.
"""

from surrogate_supervision.models.colour_bins import NUM_BINS, rgb_to_chroma

import numpy as np

from surrogate_supervision import datasets
from surrogate_supervision.datasets.pipeline import luma, stride4_view
from surrogate_supervision.datasets.splits import dataset_splits
from surrogate_supervision.pretrain.colour_accuracy import auc_from_bin_sums, bin_sums
from surrogate_supervision.pretrain.holdout import colorize

MEDIAN_SAMPLE = 2000  # pixels drawn per class and image for the class median (plenty for a median)


def split_batches(ds, stems, crop, chunk):
    """Centre crops of `stems` (whole images when `crop` covers them) as (images, masks) batches, masks at the
    stride-4 grid (255 = ignore and padding)."""
    images = [ds.image_paths[s] for s in stems]
    masks = [ds.mask_paths[s] for s in stems]
    data = datasets.segmentation_dataset(images, masks, crop=crop, batch=chunk, training=False,
                                         num_classes=ds.num_classes, palette=ds.palette)
    for image, mask in data:
        yield image, mask[:, ::4, ::4].numpy()


def chroma(rgb):
    return rgb_to_chroma(rgb).numpy()


def class_medians(ds, stems, crop, num_classes, seed=0):
    """Per class, the median chroma of its pixels over `stems` (a seeded sample of each image's pixels)."""
    rng = np.random.default_rng(seed)
    samples = [[] for _ in range(num_classes)]
    for image, mask in split_batches(ds, stems, crop, chunk=16):
        values = chroma(stride4_view(image))
        for k in range(num_classes):
            picked = values[mask == k]
            if len(picked):
                samples[k].append(picked[rng.choice(len(picked), min(len(picked), MEDIAN_SAMPLE), replace=False)])
    return [np.median(np.concatenate(s), axis=0) if s else np.zeros(2, np.float32) for s in samples]


REFERENCES = ("gray", "colorized", "class_median")


def accumulate(totals, accuracy, real, fake, gray, mask, medians):
    """Adds one batch's per-class sums of |chroma error| (both channels) to `totals`[k] = [gray, colorized,
    class median, values] and its colour-accuracy bin sums to `accuracy`[k, reference]; pixels outside
    0..K-1 (ignore, padding) are left out."""
    real, fake, gray = chroma(real), chroma(fake), chroma(gray)
    for k, median in enumerate(medians):
        inside = mask == k
        if not inside.any():
            continue
        target = real[inside]
        answers = (gray[inside], fake[inside], np.broadcast_to(median, target.shape))
        totals[k] += [*(np.abs(answer - target).sum() for answer in answers), target.size]
        for r, answer in enumerate(answers):
            accuracy[k, r] += bin_sums(answer, target)


def covering_crop(ds, stems):
    """The smallest crop of the form 16k + 1 (a whole number of output-stride-16 cells) that holds every image."""
    side = max(max(ds.read_pair(stem)[1].shape) for stem in stems)
    return 16 * -(-(side - 1) // 16) + 1


def class_colour_scores(generator, root, *, split_seed=0, test=0.1, chunk=4):
    """Chroma L1 and colour accuracy AuC of the generator, gray and the class median per class of `root`'s test
    split, and over all labeled pixels; BatchNorm moving averages (inference mode)."""
    ds = datasets.load_labeled(root)
    stems = dataset_splits(ds, seed=split_seed, test=test)
    crop = covering_crop(ds, stems["train"] + stems["test"])
    medians = class_medians(ds, stems["train"], crop, ds.num_classes)
    totals = np.zeros((ds.num_classes, 4))
    accuracy = np.zeros((ds.num_classes, len(REFERENCES), NUM_BINS, 2))
    for image, mask in split_batches(ds, stems["test"], crop, chunk):
        gray = luma(image)
        fake = colorize(generator, gray, chunk, batch_stats=False)
        accumulate(totals, accuracy, stride4_view(image), fake, stride4_view(gray), mask, medians)

    def scores(row, sums):
        gray, colorized, median, n = row
        if not n:
            return None
        aucs = {f"{key}_{reference}": value for reference, reference_sums in zip(REFERENCES, sums)
                for key, value in auc_from_bin_sums(reference_sums).items()}
        return {"chroma_l1_gray": gray / n, "chroma_l1_colorized": colorized / n, "chroma_l1_class_median":
                median / n, **aucs, "pixel_share": n / totals[:, 3].sum(), "values": int(n)}

    per_class = {name: scores(row, sums) for name, row, sums in zip(ds.class_names, totals, accuracy)}
    return {"classes": per_class, "all": scores(totals.sum(axis=0), accuracy.sum(axis=0)), "root": str(root),
            "crop": crop, "split_seed": split_seed, "n_test_images": len(stems["test"]),
            "class_median": {n: [float(v) for v in m] for n, m in zip(ds.class_names, medians)}}


def describe_by_class(result):
    """A small table: per class, its share of pixels, then chroma L1 and rebalanced colour accuracy AuC of gray, the
    class median and the generator."""
    lines = [f"chroma L1 and rebalanced colour accuracy AuC on {result['root']}'s test split "
             f"({result['n_test_images']} whole images, crop {result['crop']}):",
             f"{'class':14s} {'pixels':>7s} {'gray':>7s} {'median':>7s} {'colorized':>9s} {'vs gray':>8s}   "
             f"{'AuC gray':>8s} {'median':>7s} {'colorized':>9s} {'vs gray':>8s}"]
    for name, s in [*result["classes"].items(), ("all", result["all"])]:
        if s:
            change = s["chroma_l1_colorized"] / s["chroma_l1_gray"] - 1
            auc = [s.get(f"auc_rebalanced_{r}", float("nan")) for r in REFERENCES]  # absent in older files
            lines.append(f"{name:14s} {s['pixel_share']:7.1%} {s['chroma_l1_gray']:7.4f} "
                         f"{s['chroma_l1_class_median']:7.4f} {s['chroma_l1_colorized']:9.4f} {change:+8.1%}   "
                         f"{auc[0]:8.3f} {auc[2]:7.3f} {auc[1]:9.3f} {auc[1] / auc[0] - 1:+8.1%}")
    return "\n".join(lines)
