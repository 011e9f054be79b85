"""The model repository format on its own: names, versions, the scan and the model card (no torch, no onnx)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike import model_format
from lookalike.model_format import ModelCard
from lookalike.preprocessing import Preprocessing
from lookalike.v1 import images_pb2

CARD = ModelCard(
    name="digits",
    version=3,
    architecture="conv_fc",
    config={"embedding_dim": 16, "conv_channels": [8, 16]},
    embedding_dim=16,
    metric="dot_product",
    preprocessing=Preprocessing(height=32, width=24, channels=3, mean=(0.5,), std=(0.25,)),
    data_hash="ab" * 32,
    trained_at="2024-05-01T12:00:00+00:00",
    metrics={"test_mse": 0.01},
    parity_max_abs_error=3e-7,
)


def _publish(repository, name: str, version: str) -> None:
    folder = repository / name / version
    folder.mkdir(parents=True)
    (folder / model_format.ENCODER_FILE).write_bytes(b"")


def test_a_card_survives_the_metadata_round_trip():
    props = CARD.to_metadata()
    assert set(props) == {model_format.PREPROCESSING_KEY, model_format.MODEL_KEY}
    assert json.loads(props[model_format.MODEL_KEY])["name"] == "digits"  # written for people reading the file
    assert ModelCard.from_metadata(props, "digits", 3) == CARD


def test_the_folder_names_the_version_not_the_file():
    # A version copied to another address serves there, under that address.
    assert ModelCard.from_metadata(CARD.to_metadata(), "prod", 1).name == "prod"


@pytest.mark.parametrize("name", ["_x", ".x", "-x", "a/b", "../x", "", "x" * 129, "é"])
def test_bad_names_are_refused_by_the_exporter_and_skipped_by_the_scan(tmp_path, name):
    with pytest.raises(ValueError, match="model name"):
        model_format.model_dir(tmp_path, name)
    if name and "/" not in name:  # names a folder can have
        _publish(tmp_path, name, "1")
        _publish(tmp_path, "ok", "1")
        assert list(model_format.scan_repository(tmp_path)) == [("ok", 1)]


def test_only_canonical_positive_versions_with_an_encoder_are_published(tmp_path):
    for version in ("01", "0", "-1", "+2", "2.0", " 4", "2147483648", ".tmp-5-abcd", "5", "12"):
        _publish(tmp_path, "digits", version)
    (tmp_path / "digits" / "7").mkdir()  # no encoder: not a published version
    assert model_format.published_versions(tmp_path / "digits") == [5, 12]
    assert list(model_format.scan_repository(tmp_path)) == [("digits", 5), ("digits", 12)]
    assert list(model_format.scan_repository(tmp_path / "missing")) == []
    with pytest.raises(ValueError, match="version must be a positive integer"):
        model_format.version_dir(tmp_path, "digits", 0)


@given(st.text(alphabet="0123456789+- .", max_size=12))
def test_a_version_has_one_spelling(folder):
    version = model_format.version_of(folder)
    assert version is None or (str(version) == folder and 1 <= version <= model_format.MAX_VERSION)


def test_temporary_version_dirs_are_hidden_from_the_scan(tmp_path):
    folder = model_format.temporary_version_dir(tmp_path / "digits", 2)
    assert folder.name.startswith(".tmp-2-") and folder != model_format.temporary_version_dir(tmp_path / "digits", 2)
    _publish(tmp_path, "digits", folder.name)
    assert model_format.published_versions(tmp_path / "digits") == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda props: props.pop(model_format.PREPROCESSING_KEY), r"lacks \['lookalike.preprocessing'\]"),
        (lambda props: props.update({model_format.PREPROCESSING_KEY: "{}"}), "is not a preprocessing spec"),
        (lambda props: props.update({model_format.MODEL_KEY: "{"}), "is not JSON"),
        (lambda props: _edit_model(props, lambda info: info.pop("embedding_dim")), r"lacks \['embedding_dim'\]"),
        (lambda props: _edit_model(props, lambda info: info.update(metric="hamming")), "unknown metric 'hamming'"),
        (lambda props: _edit_model(props, lambda info: info.update(embedding_dim="16")), "embedding_dim must be"),
    ],
)
def test_broken_metadata_is_a_clear_value_error(change, message):
    props = CARD.to_metadata()
    change(props)
    with pytest.raises(ValueError, match=message):
        ModelCard.from_metadata(props, "digits", 3)


def _edit_model(props: dict[str, str], edit) -> None:
    info = json.loads(props[model_format.MODEL_KEY])
    edit(info)
    props[model_format.MODEL_KEY] = json.dumps(info)


def test_every_metric_has_a_proto_value_and_back():
    assert set(model_format.METRIC_ENUM) == set(model_format.METRICS)
    assert {model_format.METRIC_NAME[model_format.METRIC_ENUM[m]] for m in model_format.METRICS} == set(model_format.METRICS)
    assert images_pb2.METRIC_UNSPECIFIED not in model_format.METRIC_NAME


# A foreign encoder's flat metadata (docs/model-repository.md), every optional key set too.
FOREIGN = {
    model_format.CHANNELS_KEY: "1",
    model_format.HEIGHT_KEY: "64",
    model_format.WIDTH_KEY: "48",
    model_format.MEAN_KEY: "0.5",
    model_format.STD_KEY: "0.25",
    model_format.EMBEDDING_DIM_KEY: "128",
    model_format.METRIC_KEY: "dot_product",
    model_format.RESIZE_KEY: "pad",
    model_format.BACKGROUND_KEY: "255",
    model_format.OUTPUT_KEY: "pooler_output",
    model_format.ARCHITECTURE_KEY: "resnet18",
}


def test_a_foreign_encoder_is_described_by_flat_metadata():
    card = model_format.read_card(FOREIGN, "resnet", 2)
    assert card.preprocessing == Preprocessing(height=64, width=48, channels=1, mean=(0.5,), std=(0.25,), resize="pad", background=255)
    assert (card.name, card.version, card.embedding_dim, card.metric) == ("resnet", 2, 128, "dot_product")
    assert (card.architecture, card.output, card.parity_max_abs_error) == ("resnet18", "pooler_output", None)
    bare = model_format.read_card({key: FOREIGN[key] for key in model_format.FOREIGN_KEYS}, "resnet", 2)
    assert (bare.metric, bare.architecture, bare.output, bare.preprocessing.resize) == ("cosine", "onnx", "", "stretch")
    assert bare.preprocessing.background == 0  # grayscale: black, as for our models
    assert model_format.read_card(CARD.to_metadata(), "digits", 3) == CARD  # our own card wins when present


@pytest.mark.parametrize(
    "key, value, message",
    [
        (model_format.STD_KEY, None, r"metadata lacks \['lookalike.std'\]: an ONNX encoder not made by `lookalike export`"),
        (model_format.CHANNELS_KEY, "2", "'lookalike.channels' must be 1 .grayscale. or 3"),
        (model_format.HEIGHT_KEY, "0", "'lookalike.height' must be an integer from 1 to 4096, got '0'"),
        (model_format.WIDTH_KEY, "224224", "'lookalike.width' must be an integer from 1 to 4096"),
        (model_format.WIDTH_KEY, "3.5", "'lookalike.width' must be an integer"),
        (model_format.MEAN_KEY, "0.5,0.5", "'lookalike.mean' must be 1 comma-separated numbers"),
        (model_format.MEAN_KEY, "nan", "'lookalike.mean' must be"),
        (model_format.STD_KEY, "0", "'lookalike.std' must be 1 comma-separated positive numbers"),
        (model_format.EMBEDDING_DIM_KEY, "-1", "'lookalike.embedding_dim' must be an integer"),
        (model_format.METRIC_KEY, "hamming", "'lookalike.metric' must be one of cosine"),
        (model_format.RESIZE_KEY, "crop", "'lookalike.resize' must be one of stretch, pad"),
        (model_format.BACKGROUND_KEY, "256", "'lookalike.background' must be an integer from 0 to 255"),
    ],
)
def test_foreign_metadata_that_is_missing_or_wrong_is_refused_by_its_key(key, value, message):
    props = dict(FOREIGN)
    if value is None:
        del props[key]
    else:
        props[key] = value
    with pytest.raises(ValueError, match=message):
        model_format.read_card(props, "resnet", 2)


def test_three_channels_take_one_or_three_values():
    props = {**FOREIGN, model_format.CHANNELS_KEY: "3", model_format.MEAN_KEY: "0.485, 0.456, 0.406", model_format.STD_KEY: "0.2"}
    assert model_format.read_card(props, "resnet", 2).preprocessing.mean == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match="'lookalike.mean' must be 1 or 3 comma-separated numbers"):
        model_format.read_card({**props, model_format.MEAN_KEY: "0.1,0.2"}, "resnet", 2)


def test_a_card_written_before_the_output_field_still_reads():
    props = CARD.to_metadata()
    _edit_model(props, lambda info: info.pop("output"))
    assert ModelCard.from_metadata(props, "digits", 3) == CARD


def test_every_foreign_key_read_is_documented():
    documented = (Path(__file__).parents[1] / "docs" / "model-repository.md").read_text()
    optional = (model_format.METRIC_KEY, model_format.RESIZE_KEY, model_format.BACKGROUND_KEY, model_format.OUTPUT_KEY, model_format.ARCHITECTURE_KEY)
    assert [key for key in (*model_format.FOREIGN_KEYS, *optional) if f"| `{key}` |" not in documented] == []
