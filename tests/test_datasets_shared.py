"""Integration on the real datasets in ../shared/data (skipped when absent; never copied into the repo)."""

import subprocess
import sys
from pathlib import Path

import pytest

from surrogate_supervision.datasets import list_unlabeled, load_labeled, segmentation_dataset

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.shared_data, pytest.mark.slow]  # real datasets (setup.cfg)


@pytest.mark.parametrize("name, pairs, classes", [("ccp_human_parsing", 1004, 6), ("kvasir_seg", 1000, 2)])
def test_inspect_reports_pairs_and_classes(shared_dataset, name, pairs, classes):
    root = shared_dataset(name)
    result = subprocess.run([sys.executable, str(REPO / "datasets" / "describe.py"), str(root)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"images    {pairs}\nmasks     {pairs}\nbad pairs 0" in result.stdout
    assert f"classes   {classes}\n" in result.stdout
    assert "no problems found" in result.stdout


def test_ccp_unlabeled_sources_exclude_test_split(shared_dataset):
    root = shared_dataset("ccp_human_parsing")
    sources = list_unlabeled([root])
    assert len(sources) == 1004 - 100 + 1094


def test_kvasir_pipeline_batch(shared_dataset):
    ds = load_labeled(shared_dataset("kvasir_seg"))
    stems = ds.stems[:8]
    images, masks = next(iter(segmentation_dataset([ds.image_paths[s] for s in stems],
                                                   [ds.mask_paths[s] for s in stems], crop=129, batch=4,
                                                   num_classes=ds.num_classes)))
    assert images.shape == (4, 129, 129, 3) and set(masks.numpy().ravel().tolist()) <= {0, 1, 255}
