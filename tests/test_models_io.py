import threading

from surrogate_supervision.models.io import read_json, write_json


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    """Every worker of a multi-worker run may write the same small file (splits, train_stems.txt) at once: each
    writer needs its own temporary name, or one renames away the file the other is still writing."""
    path, errors = tmp_path / "shared.json", []

    def writer(index):
        try:
            for i in range(200):
                write_json(path, {"writer": index, "i": i})
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            errors.append(repr(error))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert read_json(path)["i"] == 199 and not list(tmp_path.glob(".tmp.*"))
