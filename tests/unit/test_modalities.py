import json

import pytest

from edgevae.errors import ConfigError, ShapeError
from edgevae.modalities import ModalityKind, ModalitySet, ModalitySpec


def _specs():
    cams = [ModalitySpec(f"cam{i}", "video", (8, 16, 16), "uint8", share="cams") for i in range(3)]
    return ModalitySet(
        [
            *cams,
            ModalitySpec("audio", "spectrogram", (1, 32, 32)),
            ModalitySpec("motion", "series", (16, 6)),
            ModalitySpec("feat", "vector", (12,)),
        ]
    )


def test_json_round_trip_is_exact():
    specs = _specs()
    text = json.dumps(specs.to_list())
    again = ModalitySet.from_list(json.loads(text))
    assert again == specs
    assert again.names == ("cam0", "cam1", "cam2", "audio", "motion", "feat")
    assert again["audio"].kind is ModalityKind.spectrogram


def test_mask_order_is_spec_order_and_share_groups():
    specs = _specs()
    assert [specs.index(n) for n in specs.names] == list(range(6))
    groups = specs.share_groups()
    assert list(groups) == ["cams"]
    assert [s.name for s in groups["cams"]] == ["cam0", "cam1", "cam2"]


def test_rgb_video_frames():
    spec = ModalitySpec("cam", "video", (24, 8, 8), "uint8", channels=3)
    assert spec.frames == 8
    with pytest.raises(ConfigError, match="frames x channels"):
        ModalitySpec("cam", "video", (8, 8, 8), "uint8", channels=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Cam0", "kind": "video", "shape": (8, 8, 8)}, "invalid modality name"),
        ({"name": "mask", "kind": "vector", "shape": (3,)}, "reserved"),
        ({"name": "recon_x", "kind": "vector", "shape": (3,)}, "reserved"),
        ({"name": "a", "kind": "vidoe", "shape": (8, 8, 8)}, "Did you mean 'video'"),
        ({"name": "a", "kind": "video", "shape": (8, 8)}, "must have 3 positive dimensions"),
        ({"name": "a", "kind": "series", "shape": (0, 3)}, "positive"),
        ({"name": "a", "kind": "spectrogram", "shape": (2, 8, 8)}, r"\(1, n_mels, frames\)"),
        ({"name": "a", "kind": "vector", "shape": (3,), "dtype": "float64"}, "dtype"),
        ({"name": "a", "kind": "vector", "shape": "abc"}, "shape must be a sequence of integers"),
        ({"name": "a", "kind": "vector", "shape": (3,), "channels": 3}, "video only"),
        ({"name": "a", "kind": "video", "shape": (8, 8, 8), "channels": 2}, "1 \\(gray\\) or 3"),
        ({"name": "a", "kind": "vector", "shape": (3,), "share": "Bad-Group"}, "share group"),
    ],
)
def test_invalid_specs_are_rejected_with_the_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModalitySpec(**kwargs)


def test_invalid_sets():
    a = ModalitySpec("a", "vector", (3,))
    with pytest.raises(ConfigError, match="empty"):
        ModalitySet([])
    with pytest.raises(ConfigError, match="duplicate"):
        ModalitySet([a, a])
    with pytest.raises(ConfigError, match="share group 'g'"):
        ModalitySet(
            [
                ModalitySpec("c0", "video", (8, 8, 8), share="g"),
                ModalitySpec("c1", "video", (8, 16, 16), share="g"),
            ]
        )
    with pytest.raises(ConfigError, match="unknown keys"):
        ModalitySet.from_list([{"name": "a", "kind": "vector", "shape": [3], "colour": 1}])
    with pytest.raises(ConfigError, match=r"unknown modality 'cam9'\. Did you mean"):
        _specs()["cam9"]


def test_check_compatible_names_the_difference():
    specs = _specs()
    other = ModalitySet([*specs.specs[:-1], ModalitySpec("feat", "vector", (13,))])
    specs.check_compatible(specs)
    with pytest.raises(ShapeError, match=r"feat.*\(12,\).*\(13,\)"):
        specs.check_compatible(other)


def test_frames_only_for_video():
    assert ModalitySpec("c", "video", (8, 4, 4)).frames == 8
    with pytest.raises(ConfigError, match="'feat' is not video; it has no frames"):
        ModalitySpec("feat", "vector", (3,)).frames  # noqa: B018


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"name": "a"}, "'modalities' must be a JSON list"),
        (["a"], "a modality spec must be a JSON object, got str"),
        ([{"name": "a", "kind": "vector"}], r"missing keys \['shape'\]"),
    ],
)
def test_bad_spec_json(items, message):
    with pytest.raises(ConfigError, match=message):
        ModalitySet.from_list(items)
