"""The command line against real servers: index a messy folder, query with a contact sheet."""

from __future__ import annotations

from PIL import Image

from lookalike_cli.main import main


def test_index_reports_every_unusable_file_and_query_draws_a_sheet(tmp_path, search_address, digit_pngs, capsys):
    folder = tmp_path / "catalogue"
    (folder / "shoes").mkdir(parents=True)
    for i, png in enumerate(digit_pngs[:20]):
        (folder / "shoes" / f"{i}.png").write_bytes(png)
    (folder / "truncated.png").write_bytes(digit_pngs[0][:70])
    (folder / "notes.txt").write_text("not an image")
    (folder / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"junk")

    assert main(["index", str(folder), "--search", search_address, "--collection", "cat", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "indexed 20, skipped 1, failed 4" in out
    for name, reason in [("truncated.png", "truncated"), ("notes.txt", "not a recognisable image"), ("photo.heic", "HEIC"), ("empty.jpg", "empty image")]:
        assert any(name in line and reason in line for line in out.splitlines()), (name, out)

    assert main(["index", str(folder), "--search", search_address, "--collection", "cat", "--skip-existing"]) == 0
    assert "indexed 0, skipped 21, failed 4" in capsys.readouterr().out

    sheet = tmp_path / "sheet.png"
    assert main(["query", str(folder / "shoes" / "5.png"), "--search", search_address, "--collection", "cat", "-k", "4", "--sheet", str(sheet)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[2] == "shoes/5.png" and "folder:shoes" in table[1]
    assert Image.open(sheet).size[0] > 4 * 112


def test_help_texts_exist_for_every_command(capsys):
    import pytest

    for command in ["train", "export", "serve-encoder", "serve-search", "index", "query", "demo"]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: lookalike " + command in capsys.readouterr().out
