"""`lookalike migrate` and `lookalike alias` against real servers: the whole flow from the command line."""

from __future__ import annotations

import pytest

from lookalike_cli.main import main
from lookalike_cli.migrating import parse_model
from tests.test_reindex import fill, two_versions  # noqa: F401 - a fixture


def test_migrate_reports_switches_and_rolls_back(two_versions, search, search_address, tmp_path, capsys):  # noqa: F811
    fill(search, "shop-v1", 80)
    assert main(["alias", "--search", search_address, "set", "shop", "shop-v1"]) == 0
    report = tmp_path / "report"
    code = main(
        ["migrate", "--search", search_address, "--collection", "shop", "--to-model", "tiny:2", "--switch", "--report", str(report), "--no-progress", "--images-per-second", "40"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "copying:" in out and "measuring:" in out, "one line per phase without a terminal"
    assert "| copy recall@1, every edit |" in out and "alias 'shop' now points at 'shop-v1.tiny-v2'" in out
    assert (report / "report.png").read_bytes().startswith(b"\x89PNG") and (report / "report.md").read_text().startswith("Migration report")
    assert search.get_collection("shop").name == "shop-v1.tiny-v2"

    assert main(["alias", "--search", search_address, "rollback", "shop"]) == 0
    assert search.get_collection("shop").name == "shop-v1"
    main(["alias", "--search", search_address, "list"])
    assert "shop -> shop-v1 (before: shop-v1.tiny-v2)" in capsys.readouterr().out


def test_switch_without_an_alias_is_refused_with_a_hint(two_versions, search, search_address):  # noqa: F811
    fill(search, "plain", 5)
    with pytest.raises(SystemExit, match="--switch needs an alias"):
        main(["migrate", "--search", search_address, "--collection", "plain", "--to-model", "tiny", "--switch"])
    assert parse_model("digits:3") == ("digits", 3) and parse_model("digits") == ("digits", 0)
    with pytest.raises(ValueError):
        parse_model("digits:x")
