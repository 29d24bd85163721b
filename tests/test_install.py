"""A plain `pip install .` beside other packages called `datasets` and `models`: one import name, no clash.

Most of the toolkit's users have Hugging Face's `datasets` (or some `models`) installed. What installs is one
package, `surrogate_supervision`, whose subpackages are the repository's folders (setup.cfg's package_dir), so the
other packages still import as themselves, their files are not overwritten, and the scripts find the toolkit.

The fresh virtual environment reaches the suite's own TensorFlow through a `.pth` file (nothing is downloaded);
the toolkit and the two stand-in packages are installed into it with `--no-deps --no-index`.
"""

import os
import shutil
import site
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "datasets", "models", "pretrain", "finetune", "experiments")
OTHERS = ("datasets", "models")  # the stand-ins' import names, as Hugging Face's and many a lab's own


def run(python, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([str(python), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result


def write_other_package(root, name):
    """A one-module distribution named `other-<name>` whose import name is `name`."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(f'WHO = "the other {name}"\n')
    (root / "setup.cfg").write_text(f"[metadata]\nname = other-{name}\nversion = 1.0\n[options]\npackages = {name}\n")
    (root / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                         'build-backend = "setuptools.build_meta"\n')
    return root


def copy_sources(destination):
    """What `git clone` gives, without build outputs: the install must not write into the suite's own tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "results")
    destination.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """A fresh venv holding `datasets` and `models` of other distributions, then the toolkit (plain install)."""
    work = tmp_path_factory.mktemp("install")
    venv.create(work / "venv", with_pip=True)
    python = work / "venv" / "bin" / "python"
    packages = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        cwd=work).stdout.strip())
    # The suite's own site-packages after the venv's: TensorFlow and the build tools without a download. A .pth
    # line only appends a path; that folder's own .pth files (the suite's editable install) are not run.
    (packages / "suite_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    for name in OTHERS:
        run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
            write_other_package(work / f"other_{name}", name), cwd=work)
    clone = copy_sources(work / "clone")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", clone, cwd=work)
    return python, packages, clone, work


@pytest.mark.slow
def test_other_datasets_and_models_still_import_as_themselves(environment):
    python, packages, _, work = environment
    shown = run(python, "-c", "import datasets, models; print(datasets.WHO); print(models.WHO)", cwd=work)
    assert shown.stdout.split("\n")[:2] == ["the other datasets", "the other models"]
    assert sorted(p.name for p in (packages / "datasets").iterdir() if p.suffix == ".py") == ["__init__.py"]
    assert sorted(p.name for p in (packages / "models").iterdir() if p.suffix == ".py") == ["__init__.py"]


@pytest.mark.slow
def test_the_toolkit_imports_from_its_one_package(environment):
    python, packages, _, work = environment
    where = run(python, "-c", "import surrogate_supervision.models as m, surrogate_supervision.datasets as d; "
                "print(m.__file__); print(d.__file__)", cwd=work).stdout.split()
    assert where == [str(packages / "surrogate_supervision" / name / "__init__.py") for name in ("models", "datasets")]


@pytest.mark.slow
def test_a_script_fine_tunes_two_steps_beside_them(environment):
    """The scripts as the README types them, from the clone, with the installed package under them."""
    python, _, clone, work = environment
    data, out = work / "synthetic", work / "runs" / "scratch"
    run(python, "-m", "surrogate_supervision.datasets.synthetic", "--out", data, "--n-labeled", "12",
        "--n-unlabeled", "0", "--size", "64", cwd=work)
    run(python, clone / "finetune" / "segment.py", "--data", data, "--init", "scratch", "--frac", "1.0", "--out", out,
        "--width", "0.125", "--crop", "65", "--batch", "2", "--steps", "2", cwd=work)
    assert (out / "metrics.json").is_file() and (out / "best.weights.h5").is_file()
