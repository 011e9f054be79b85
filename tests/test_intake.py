"""Odd files at the door, through the real servers: each is refused with INVALID_ARGUMENT naming
its index and reason, or accepted when it is a valid picture, and nothing stops: the encoder keeps
serving, and `lookalike index` reports every refused file and indexes the rest."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from lookalike.errors import InvalidArgument
from lookalike_cli.main import main
from tests import odd_images

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own, at open


@pytest.fixture(scope="module")
def refused() -> dict[str, tuple[bytes, str]]:
    """File name: (bytes, the reason the services give); built once for the module."""
    return {name: (build(), reason) for name, (build, reason) in odd_images.REFUSED.items()}


@pytest.fixture(scope="module")
def accepted() -> dict[str, bytes]:
    return {name: build() for name, build in odd_images.VALID.items()}


@pytest.mark.parametrize("name", list(odd_images.REFUSED))
def test_each_odd_file_is_refused_naming_its_index_and_reason(encoder, digit_pngs, refused, name):
    data, reason = refused[name]
    with pytest.raises(InvalidArgument) as raised:
        encoder.embed([digit_pngs[0], data])
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.reason) for v in raised.value.field_violations] == [("images[1].encoded", reason)]
    assert encoder.embed(digit_pngs[:1])[0].shape == (1, 16)  # still serving


def test_valid_odd_pictures_are_accepted(encoder, accepted):
    embeddings, _ = encoder.embed(list(accepted.values()))
    assert embeddings.shape == (len(accepted), 16) and np.isfinite(embeddings).all()


def test_one_batch_of_every_odd_file_names_each_bad_one_at_once(encoder, refused, accepted):
    batch = [data for data, _ in refused.values()] + list(accepted.values())
    with pytest.raises(InvalidArgument) as raised:
        encoder.embed(batch)
    assert [(v.field, v.reason) for v in raised.value.field_violations] == [
        (f"images[{index}].encoded", reason) for index, (_, reason) in enumerate(refused.values())
    ]
    assert encoder.embed(batch[len(refused) :])[0].shape == (len(accepted), 16)  # the rest, resent, goes through


def test_lookalike_index_reports_each_odd_file_and_indexes_the_rest(tmp_path, search_address, search, digit_pngs, refused, accepted, capsys):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    for name, (data, _) in refused.items():
        (folder / name).write_bytes(data)
    for name, data in accepted.items():
        (folder / name).write_bytes(data)
    for i, png in enumerate(digit_pngs[:10]):
        (folder / f"digit-{i}.png").write_bytes(png)

    assert main(["index", str(folder), "--search", search_address, "--collection", "odd", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert f"indexed {len(accepted) + 10}, skipped 0, failed {len(refused)}" in out
    for name, (_, reason) in refused.items():
        assert any(f"failed  {folder / name}: {reason}: " in line for line in out.splitlines()), (name, out)
    assert {item.id for item in search.get("odd", list(accepted)).items} == set(accepted)
