import json
import os

import numpy as np
import pytest

from edgevae.data import DatasetWriter, Normalizer, from_arrays, open_dataset
from edgevae.data.loader import clip_labels, make_loader
from edgevae.errors import DatasetError, OutputExistsError, ShapeError
from edgevae.modalities import ModalitySet, ModalitySpec

SPECS = ModalitySet(
    [
        ModalitySpec("cam0", "video", (2, 4, 4), "uint8"),
        ModalitySpec("audio", "spectrogram", (1, 3, 5)),
        ModalitySpec("imu", "series", (4, 2)),
    ]
)


def _arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "cam0": rng.integers(0, 255, (n, 2, 4, 4), dtype=np.uint8),
        "audio": (rng.normal(size=(n, 1, 3, 5)) * 2 + 5).astype(np.float32),
        "imu": (rng.normal(size=(n, 4, 2)) * 3 - 1).astype(np.float32),
    }


def _write(path, n_train=50, shard_clips=16, **kw):
    with DatasetWriter(
        path, SPECS, anomaly_types=["normal", "odd"], label_frames=2, shard_clips=shard_clips, **kw
    ) as w:
        w.add("train", _arrays(n_train), video_id=0)
        labels = np.zeros((20, 2), np.uint8)
        labels[5:8] = 1
        w.add("test", _arrays(20, 1), frame_labels=labels, video_id=1)
    return path


def test_round_trip_shards_and_summary(tmp_path):
    ds = open_dataset(_write(tmp_path / "ds"))
    assert ds.splits == ("train", "test")
    train = ds.split("train")
    assert len(train) == 50 and len(train.shards) == 4  # 16 + 16 + 16 + 2
    raw = train.read([49, 0, 17])
    np.testing.assert_array_equal(raw["cam0"], _arrays(50)["cam0"][[49, 0, 17]])
    assert raw["mask"].dtype == np.uint8 and raw["mask"].shape == (3, 3)
    assert ds.anomalous_frames("test") == {"odd": 6}
    assert ds.index["splits"]["test"]["videos"] == 1


def test_same_input_same_bytes(tmp_path):
    a, b = _write(tmp_path / "a"), _write(tmp_path / "b")
    assert (a / "index.json").read_bytes() == (b / "index.json").read_bytes()


def test_standardisation_uses_train_statistics(tmp_path):
    ds = open_dataset(_write(tmp_path / "ds"))
    norm = Normalizer(ds.modalities, ds.normalization)
    batch = norm.batch(ds.split("train").read(np.arange(50)))
    assert batch["cam0"].dtype == np.float32 and batch["cam0"].max() <= 1.0
    for name, axes in (("audio", (0, 1, 3)), ("imu", (0, 1))):
        np.testing.assert_allclose(batch[name].mean(axis=axes), 0, atol=1e-4)
        np.testing.assert_allclose(batch[name].std(axis=axes), 1, atol=1e-3)
    x = ds.split("test").read([0])["audio"]
    np.testing.assert_allclose(norm.denormalize("audio", norm.numpy("audio", x)), x, rtol=1e-5)


def test_loader_shapes_dtypes_and_seeded_order(tmp_path):
    ds = open_dataset(_write(tmp_path / "ds"))
    batches = list(make_loader(ds, "test", 8, shuffle=True, seed=3))
    assert [len(b["mask"]) for b in batches] == [8, 8, 4]
    b = batches[0]
    assert b["cam0"].shape == (8, 2, 4, 4) and str(b["cam0"].dtype) == "torch.float32"
    assert b["audio"].shape == (8, 1, 3, 5) and b["imu"].shape == (8, 4, 2)
    assert b["mask"].shape == (8, 3) and str(b["mask"].dtype) == "torch.float32"
    assert b["frame_labels"].shape == (8, 2)
    again = next(iter(make_loader(ds, "test", 8, shuffle=True, seed=3)))
    assert b["clip_index"].tolist() == again["clip_index"].tolist()
    labels = np.concatenate([x["anomaly"].numpy() for x in batches])
    order = np.concatenate([x["clip_index"].numpy() for x in batches])
    assert sorted(order[labels == 1].tolist()) == [5, 6, 7]


def test_clip_labels_majority_non_normal():
    fl = np.array([[0, 0], [0, 2], [1, 1], [2, 1]], np.uint8)
    assert clip_labels(fl).tolist() == [0, 2, 1, 1]


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    path = _write(tmp_path / "ds")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        _write(path)
    _write(path, n_train=40, overwrite=True)
    assert len(open_dataset(path).split("train")) == 40


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError), DatasetWriter(out, SPECS, label_frames=2) as w:
        w.add("train", _arrays(40))
        raise RuntimeError("killed")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.partial")]


def test_append_adds_clips_and_keeps_index_consistent(tmp_path):
    path = _write(tmp_path / "ds")
    with DatasetWriter(path, SPECS, label_frames=2, append=True) as w:
        w.add("val", _arrays(7, 2), video_id=5)
    ds = open_dataset(path)
    assert len(ds.split("val")) == 7 and len(ds.split("train")) == 50
    bad = ModalitySet([ModalitySpec("cam0", "video", (2, 4, 4), "uint8")])
    with pytest.raises(ShapeError, match="do not match"):
        DatasetWriter(path, bad, label_frames=2, append=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated"),
        ("flip", "SHA-256"),
        ("delete", "missing"),
        ("index", "cannot parse"),
        ("version", "format version 99"),
        ("no_index", "not a complete edgevae dataset"),
    ],
)
def test_corrupt_datasets_are_named(tmp_path, damage, message):
    path = _write(tmp_path / "ds")
    shard = path / "train" / "shard-00001" / "audio.npy"
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(shard.read_bytes())
        data[-1] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "delete":
        os.remove(shard)
    elif damage == "index":
        (path / "index.json").write_text("{not json")
    elif damage == "version":
        index = json.loads((path / "index.json").read_text())
        index["format_version"] = 99
        (path / "index.json").write_text(json.dumps(index))
    else:
        os.remove(path / "index.json")
    with pytest.raises(DatasetError, match=message):
        open_dataset(path)


def test_missing_directory_says_how_to_create_one(tmp_path):
    with pytest.raises(DatasetError, match="edgevae data synth"):
        open_dataset(tmp_path / "nope")


def test_writer_rejects_bad_shapes_and_labels(tmp_path):
    with DatasetWriter(tmp_path / "ds", SPECS, label_frames=2) as w:
        bad = _arrays(4)
        bad["imu"] = bad["imu"][:, :3]
        with pytest.raises(ShapeError, match="'imu'"):
            w.add("train", bad)
        with pytest.raises(ShapeError, match="no anomaly type name"):
            w.add("train", _arrays(4), frame_labels=np.full((4, 2), 3))
        with pytest.raises(DatasetError, match="unknown split"):
            w.add("tain", _arrays(4))
        w.add("train", _arrays(4))


def test_from_arrays_vector_and_series_with_missing_entries(tmp_path):
    rng = np.random.default_rng(0)
    views = {f"view{i}": rng.normal(size=(60, 5)).astype(np.float32) for i in range(6)}
    views["view2"][[3, 7]] = np.nan  # NaN rows become missing without an explicit mask
    imu = rng.normal(size=(60, 10, 3)).astype(np.float32)
    mask = np.ones((60, 2), np.uint8)
    mask[:10, 1] = 0
    p1 = from_arrays(tmp_path / "views", {"train": views})
    p2 = from_arrays(
        tmp_path / "imu",
        {"train": {"acc": imu, "gyro": imu * 2}, "test": {"acc": imu[:6], "gyro": imu[:6]}},
        masks={"train": mask},
        frame_labels={"test": np.array([0, 1, 1, 0, 0, 0])},
    )
    d1, d2 = open_dataset(p1), open_dataset(p2)
    assert [s.kind.value for s in d1.modalities] == ["vector"] * 6
    m1 = d1.split("train").read(np.arange(60))["mask"]
    assert m1[:, 2].tolist().count(0) == 2 and m1[3, 2] == 0
    assert np.all(d1.split("train").read([3])["view2"] == 0)
    assert [s.kind.value for s in d2.modalities] == ["series", "series"]
    assert d2.split("train").read(np.arange(10))["mask"][:, 1].sum() == 0
    assert d2.anomalous_frames("test") == {"anomaly": 2}
    # statistics exclude the missing rows
    gyro = imu[10:] * 2
    np.testing.assert_allclose(d2.normalization["gyro"]["mean"], gyro.mean(axis=(0, 1)), rtol=1e-4)


def test_from_arrays_bad_inputs(tmp_path):
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(Exception, match="needs a 'train' split"):
        from_arrays(tmp_path / "a", {"test": {"x": x}})
    with pytest.raises(ShapeError, match="differ in length"):
        from_arrays(tmp_path / "b", {"train": {"x": x, "y": x[:5]}})
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ShapeError, match="marked present hold NaN"):
        from_arrays(tmp_path / "c", {"train": {"x": bad}}, masks={"train": np.ones((10, 1))})
    with pytest.raises(Exception, match="cannot infer the kind"):
        from_arrays(tmp_path / "d", {"train": {"x": np.zeros((4, 2, 2, 2, 2))}})
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# -- every bad input the writer, reader and normaliser handle ------------------------------------
def test_writer_rejects_bad_setup_and_batches(tmp_path):
    with pytest.raises(DatasetError, match="anomaly_types must start with 'normal'"):
        DatasetWriter(tmp_path / "a", SPECS, anomaly_types=["odd", "normal"])
    with DatasetWriter(tmp_path / "ds", SPECS, label_frames=2) as w:
        partial = _arrays(4)
        del partial["audio"]
        with pytest.raises(ShapeError, match=r"arrays for modalities \['audio'\] are missing"):
            w.add("train", partial)
        with pytest.raises(ShapeError, match=r"mask must have shape \(4, 3\), got \(4, 2\)"):
            w.add("train", _arrays(4), mask=np.ones((4, 2)))
        with pytest.raises(ShapeError, match=r"frame_labels must have shape \(4, 2\)"):
            w.add("train", _arrays(4), frame_labels=np.zeros((4, 3)))
        w.add("train", _arrays(4))
    assert len(open_dataset(tmp_path / "ds").split("train")) == 4  # bad batches left no trace


def test_append_with_other_label_frames_is_refused(tmp_path):
    path = _write(tmp_path / "ds")
    with pytest.raises(ShapeError, match="appended clips have 3 label frames, the dataset has 2"):
        DatasetWriter(path, SPECS, label_frames=3, append=True)


def test_dataset_without_train_split_is_refused(tmp_path):
    with (
        pytest.raises(DatasetError, match="needs a 'train' split"),
        DatasetWriter(tmp_path / "ds", SPECS, label_frames=2) as w,
    ):
        w.add("test", _arrays(4))
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ix: ix.update(format="something-else"), "is not an edgevae dataset index"),
        (lambda ix: ix.pop("modalities"), "lacks 'modalities'; the index is damaged"),
        (lambda ix: ix.pop("splits"), "lacks 'splits'"),
    ],
)
def test_foreign_or_damaged_index(tmp_path, edit, message):
    path = _write(tmp_path / "ds")
    index = json.loads((path / "index.json").read_text())
    edit(index)
    (path / "index.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match=message):
        open_dataset(path)


def test_missing_split_and_out_of_range_reads(tmp_path):
    ds = open_dataset(_write(tmp_path / "ds"))
    with pytest.raises(DatasetError, match=r"has no 'val' split \(it has: train, test\)"):
        ds.split("val")
    with pytest.raises(IndexError, match="out of range for split 'test'"):
        ds.split("test").read([20])
    with pytest.raises(IndexError, match="out of range"):
        ds.split("test").read([-1])


def test_unreadable_shard_is_named_when_not_verified(tmp_path):
    path = _write(tmp_path / "ds")
    shard = path / "train" / "shard-00000" / "imu.npy"
    shard.write_bytes(b"\0" * shard.stat().st_size)  # same size, no .npy header
    ds = open_dataset(path, verify="size")  # sizes match: only reading finds it
    with pytest.raises(DatasetError, match=r"cannot read shard .*shard-00000.*regenerate it"):
        ds.split("train").read([0])


def test_statistics_refuse_all_missing_and_non_finite_train_data(tmp_path):
    mask = np.ones((6, 3), np.uint8)
    mask[:, 2] = 0  # imu never present
    with (
        pytest.raises(DatasetError, match="'imu' is missing in every train sample"),
        DatasetWriter(tmp_path / "a", SPECS, label_frames=2) as w,
    ):
        w.add("train", _arrays(6), mask=mask)
    bad = _arrays(6)
    bad["audio"][2, 0, 1, 1] = np.inf
    with (
        pytest.raises(DatasetError, match="'audio' has NaN or Inf values in the train split"),
        DatasetWriter(tmp_path / "b", SPECS, label_frames=2) as w,
    ):
        w.add("train", bad)


def test_failed_close_leaves_no_partial_directory(tmp_path):
    mask = np.ones((6, 3), np.uint8)
    mask[:, 2] = 0
    with pytest.raises(DatasetError), DatasetWriter(tmp_path / "a", SPECS, label_frames=2) as w:
        w.add("train", _arrays(6), mask=mask)
    assert list(tmp_path.iterdir()) == []


def test_normalizer_needs_statistics_for_every_modality(tmp_path):
    ds = open_dataset(_write(tmp_path / "ds"))
    stats = {k: v for k, v in ds.normalization.items() if k != "audio"}
    with pytest.raises(DatasetError, match="no normalisation statistics for modality 'audio'"):
        Normalizer(ds.modalities, stats)


def test_loader_zeroes_missing_entries_and_reports_their_mask(tmp_path):
    arrays = _arrays(24)
    mask = np.ones((24, 3), np.uint8)
    mask[::3, 1] = 0  # audio missing in every third clip
    mask[1::4, 0] = 0  # cam0 missing in every fourth
    with DatasetWriter(tmp_path / "ds", SPECS, label_frames=2, shard_clips=10) as w:
        w.add("train", arrays, mask=mask)
    ds = open_dataset(tmp_path / "ds")
    batches = list(make_loader(ds, "train", 7))
    got = {k: np.concatenate([b[k].numpy() for b in batches]) for k in ("mask", "cam0", "audio")}
    np.testing.assert_array_equal(got["mask"], mask.astype(np.float32))
    assert not got["audio"][::3].any() and not got["cam0"][1::4].any()
    present = arrays["audio"][mask[:, 1] == 1]  # statistics come from present clips only
    mean = present.mean(axis=(0, 1, 3))
    np.testing.assert_allclose(ds.normalization["audio"]["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(got["audio"][mask[:, 1] == 1].mean(axis=(0, 1, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(got["cam0"][0], arrays["cam0"][0] / 255.0, rtol=1e-6)


def test_from_arrays_rejects_mismatched_arrays_and_masks(tmp_path):
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ShapeError, match=r"split 'test' has arrays \['z'\] not in the specs"):
        from_arrays(tmp_path / "a", {"train": {"x": x}, "test": {"x": x, "z": x}})
    with pytest.raises(ShapeError, match=r"split 'test' lacks arrays for \['y'\]"):
        from_arrays(tmp_path / "b", {"train": {"x": x, "y": x}, "test": {"x": x}})
    with pytest.raises(ShapeError, match=r"mask must be \(10, 2\), got \(10, 1\)"):
        from_arrays(tmp_path / "c", {"train": {"x": x, "y": x}}, masks={"train": np.ones((10, 1))})
    spec = [ModalitySpec("x", "vector", (4,))]
    with pytest.raises(ShapeError, match=r"modality 'x': expected shape \(n, 4\)"):
        from_arrays(tmp_path / "d", {"train": {"x": x}}, specs=spec)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a hidden partial dir


def test_overwrite_onto_a_file_replaces_it(capsys, tmp_path):
    from tests.cli_util import invoke

    target = tmp_path / "ds"
    target.write_text("not a dataset")
    res = invoke(capsys, "data", "synth", "--preset", "tiny", "--out", target, "--overwrite")
    assert res.code == 0, res.err
    assert (target / "index.json").is_file()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
