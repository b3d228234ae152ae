"""The one patient-level split."""

from __future__ import annotations

import pytest

from igtv.data.split import patient_split


def test_every_positive_split_gets_a_patient_when_it_can():
    assert [len(v) for v in patient_split(["a", "b"], (0.85, 0.15, 0.0), 0).values()] == [1, 1, 0]
    assert [len(v) for v in patient_split(["a", "b"], (0.8, 0.0, 0.2), 0).values()] == [1, 0, 1]
    assert [len(v) for v in patient_split(["a"], (0.8, 0.0, 0.2), 0).values()] == [1, 0, 0]
    sizes = [len(v) for v in patient_split([f"p{i}" for i in range(20)], (0.7, 0.15, 0.15), 0).values()]
    assert sizes == [14, 3, 3]


def test_validation_share_of_a_train_list_is_the_datasets_split(tmp_path):
    """``split_items`` (PCLT20K without val.txt) takes its validation patients from this function."""
    from igtv.data.datasets import split_items

    folders = [f"P{i:02d}" for i in range(10)]
    (tmp_path / "train.txt").write_text("".join(f"{f}/{f}_r1_000{k}\n" for f in folders for k in range(2)))
    val = {r.folder for r in split_items(tmp_path, "val", 0.2, seed=5)}
    assert val == set(patient_split(folders, (0.8, 0.2, 0.0), 5)["val"]) and len(val) == 2
    train = {r.folder for r in split_items(tmp_path, "train", 0.2, seed=5)}
    assert train == set(folders) - val


def test_split_all_is_every_listed_item_once(tmp_path):
    """``all`` (``igtv evaluate --split all``): the train, val and test lists together, each item once."""
    from igtv.data.datasets import split_items

    (tmp_path / "train.txt").write_text("A/A_0001\nA/A_0002\nB/B_0001\n")
    (tmp_path / "val.txt").write_text("C/C_0001\n")
    (tmp_path / "test.txt").write_text("D/D_0001\nA/A_0001\n")
    items = split_items(tmp_path, "all")
    assert [f"{r.folder}/{r.name}" for r in items] == ["A/A_0001", "A/A_0002", "B/B_0001", "C/C_0001", "D/D_0001"]
    train_only = tmp_path / "t"
    train_only.mkdir()
    (train_only / "train.txt").write_text("A/A_0001\n")
    assert {r.folder for r in split_items(train_only, "all")} == {"A"}
    with pytest.raises(FileNotFoundError, match="no train.txt"):
        split_items(tmp_path / "missing", "all")
