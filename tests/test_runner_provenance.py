"""models/runner/provenance.py: the commit and CPU recorded beside every run."""

import json
import subprocess

from surrogate_supervision.models.runner.cli import save_config
from surrogate_supervision.models.runner.provenance import REPO, code_version, describe_provenance, machine_summary

import pytest


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_code_version_names_the_commit_and_whether_tracked_files_changed(repo):
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert code_version(repo) == {"commit": head, "dirty": False}
    (repo / "untracked.txt").write_text("results are not code")
    assert code_version(repo)["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    assert code_version(repo) == {"commit": head, "dirty": True}


def test_no_code_version_outside_a_checkout_or_inside_another_repository(repo, tmp_path_factory):
    assert code_version(tmp_path_factory.mktemp("not_git")) is None
    (repo / "package").mkdir()
    assert code_version(repo / "package") is None  # a package installed into some other repository


def test_save_config_records_commit_and_cpu(tmp_path):
    config = save_config({"lr": 0.1}, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["code"] == config["code"] == code_version(REPO)
    assert written["machine"] == machine_summary() and written["machine"]["cpus"] >= 1


def test_describe_provenance_says_when_code_versions_mix():
    one = {"commit": "a" * 40, "dirty": False}
    other = {"commit": "b" * 40, "dirty": True}
    machine = {"cpu_model": "AMD EPYC", "cpus": 2, "cpu_isa": ["avx2", "avx512f"], "onednn_max_cpu_isa": "AVX2"}
    assert describe_provenance([one], machine) == (
        "commit aaaaaaaaaa", "AMD EPYC, 2 CPUs, avx2 avx512f, oneDNN cap AVX2")
    mixed, _ = describe_provenance([one, other], None)
    assert mixed.startswith("2 code versions ran parts of it") and "bbbbbbbbbb with uncommitted changes" in mixed
    assert describe_provenance([], None)[0].startswith("not recorded")
