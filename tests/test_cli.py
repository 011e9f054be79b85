"""The command line against real servers: index a messy folder, query with a contact sheet."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.client import SearchClient
from lookalike.errors import DeadlineExceeded, Internal, LookalikeError, Unavailable
from lookalike_cli.indexing import index_folder
from lookalike_cli.main import main
from tests.conftest import png_bytes


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
    for command in ["train", "export", "serve-encoder", "serve-search", "index", "query", "demo"]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: lookalike " + command in capsys.readouterr().out


class Flaky:
    """The real client, but its first upsert streams fail with `errors`, as a busy or restarting
    server's would; it records each stream's deadline and messages. No unary upsert: indexing streams."""

    def __init__(self, client: SearchClient, errors: list[LookalikeError] = ()) -> None:
        self.client, self.errors, self.timeouts, self.streams = client, list(errors), [], []

    @property
    def timeout(self) -> float:
        return self.client.timeout

    def get(self, collection, ids, *, timeout):
        return self.client.get(collection, ids, timeout=timeout)

    def upsert_stream(self, collection, batches, *, timeout):
        self.timeouts.append(timeout)
        self.streams.append([[item.id for item in batch] for batch in batches])
        if self.errors:
            raise self.errors.pop(0)
        yield from self.client.upsert_stream(collection, batches, timeout=timeout)


def digits_folder(root, digit_pngs, count: int):
    root.mkdir()
    for i, png in enumerate(digit_pngs[:count]):
        (root / f"digit-{i:02}.png").write_bytes(png)
    return root


def test_passing_failures_are_retried_with_a_longer_deadline(tmp_path, search, digit_pngs):
    folder = digits_folder(tmp_path / "digits", digit_pngs, 6)
    search.create_collection("retry", allow_existing=True)
    busy = [Unavailable("the server is restarting", reason=""), DeadlineExceeded("Deadline Exceeded", reason="")]
    flaky = Flaky(search, busy)
    report = index_folder(flaky, "retry", folder, retry_delays=(0.0, 0.0, 0.0), progress=False)
    assert (report.indexed, report.stopped, report.left) == (6, "", [])
    assert flaky.timeouts == [10, 20, 40]


def test_index_streams_the_batches_and_a_corrupt_file_fails_alone(tmp_path, search_address, digit_pngs, capsys):
    folder = digits_folder(tmp_path / "digits", digit_pngs, 30)
    (folder / "digit-13.png").write_bytes(digit_pngs[13][:60])  # cut short: in the second batch
    assert main(["index", str(folder), "--search", search_address, "--collection", "bulk", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "indexed 29, skipped 0, failed 1" in out and f"indexing {folder}: 30 files, 29 indexed" in out  # the phase's line
    [failed] = [line for line in out.splitlines() if line.startswith("  failed")]
    assert failed.startswith(f"  failed  {folder / 'digit-13.png'}: IMAGE_UNDECODABLE") and "truncated" in failed

    with SearchClient(search_address) as client:
        assert client.get_collection("bulk").size == 29
        assert client.get("bulk", ["digit-12.png", "digit-13.png", "digit-14.png"]).missing_ids == ["digit-13.png"]
        counted = Flaky(client)
        report = index_folder(counted, "bulk", folder, batch_size=8, progress=False)
    assert (report.indexed, len(report.failed), report.stopped) == (29, 1, "")
    assert [len(batch) for stream in counted.streams for batch in stream] == [8, 8, 8, 6] and len(counted.streams) == 1


def test_a_failure_that_is_not_passing_stops_the_run_at_once_and_lists_what_is_left(tmp_path, search, digit_pngs):
    folder = digits_folder(tmp_path / "digits", digit_pngs, 10)
    search.create_collection("bug", allow_existing=True)
    flaky = Flaky(search, [Internal("internal error in /lookalike.v1.Search/Upsert; see the server log", reason="")])
    report = index_folder(flaky, "bug", folder, batch_size=4, retry_delays=(0.0, 0.0), progress=False)
    assert report.indexed == 0 and report.stopped.startswith("INTERNAL: internal error") and len(flaky.timeouts) == 1
    assert report.left == [str(folder / f"digit-{i:02}.png") for i in range(10)]


def test_a_batch_over_the_message_limit_is_split_and_a_file_over_it_fails_alone(tmp_path, search_settings, digit_pngs):
    from search_service.server import create_server

    server, port = create_server(search_settings.model_copy(update={"max_message_bytes": 2048}))  # ~5 digits
    server.start()
    try:
        folder = digits_folder(tmp_path / "digits", digit_pngs, 8)
        noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        (folder / "big.png").write_bytes(png_bytes(noise))  # ~5 KB alone
        with SearchClient(f"127.0.0.1:{port}", timeout=10) as client:
            client.create_collection("small", allow_existing=True)
            report = index_folder(client, "small", folder, batch_size=8, progress=False)
    finally:
        server.stop(None)
    assert (report.indexed, report.stopped) == (8, "")
    assert [(path, reason.split(":")[0]) for path, reason in report.failed] == [(str(folder / "big.png"), "over the service's message size limit")]


def test_a_run_that_loses_its_server_stops_with_its_accounting_and_resumes(tmp_path, search_settings, digit_pngs, monkeypatch, capsys):
    from search_service.server import create_server

    folder = digits_folder(tmp_path / "catalogue", digit_pngs, 20)
    (folder / "0-truncated.png").write_bytes(digit_pngs[0][:70])  # sorted first: in the first batch
    (folder / ".DS_Store").write_bytes(b"junk")
    left_list = tmp_path / "left.txt"
    server, port = create_server(search_settings)
    server.start()
    upsert_stream = SearchClient.upsert_stream

    def upsert_stream_then_lose_the_server(self, *args, **kwargs):
        yield from upsert_stream(self, *args, **kwargs)
        server.stop(None)  # the first stream went through; the next finds nobody

    monkeypatch.setattr(SearchClient, "upsert_stream", upsert_stream_then_lose_the_server)
    command = ["index", str(folder), "--collection", "cat", "--batch-size", "8", "--stream-items", "8", "--retries", "0", "--left-list", str(left_list)]
    with pytest.raises(SystemExit) as stopped:
        main([*command, "--search", f"127.0.0.1:{port}"])
    message = str(stopped.value.code)
    assert "stopped early (UNAVAILABLE" in message and f"13 files left, listed in {left_list}" in message and "--skip-existing" in message
    out = capsys.readouterr().out
    assert "indexed 7, skipped 1, failed 1" in out and "0-truncated.png: IMAGE_UNDECODABLE" in out and "13 files left" in out
    assert left_list.read_text().splitlines() == [str(folder / f"digit-{i:02}.png") for i in range(7, 20)]

    monkeypatch.undo()
    server, port = create_server(search_settings)  # back, on the same data
    server.start()
    try:
        assert main([*command, "--search", f"127.0.0.1:{port}", "--skip-existing"]) == 0
        assert "indexed 13, skipped 8, failed 1" in capsys.readouterr().out
        with SearchClient(f"127.0.0.1:{port}") as client:
            assert client.get_collection("cat").size == 20
    finally:
        server.stop(None)


def test_query_copies_prints_verdicts_and_draws_the_region_and_the_edit(tmp_path, search_address, capsys):
    from tests.test_find_copies import crop_caption_mirror, encoded, photo

    folder = tmp_path / "archive"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        photo(name).save(folder / f"{name}.png")
    assert main(["index", str(folder), "--search", search_address, "--collection", "news", "--find-copies"]) == 0
    copy, _ = crop_caption_mirror(photo("chelsea"))
    query = tmp_path / "reshared.jpg"
    query.write_bytes(encoded(copy, "JPEG", quality=70))
    sheet = tmp_path / "copies.png"
    capsys.readouterr()
    assert main(["query", "--copies", str(query), "--search", search_address, "--collection", "news", "--sheet", str(sheet)]) == 0
    first = capsys.readouterr().out.splitlines()[1]
    assert "edited copy" in first and "local features" in first and "mirrored" in first and first.endswith("chelsea.png")
    assert Image.open(sheet).size[1] > 256  # the tiles, then the edit picture under them


def test_demo_runs_end_to_end_on_a_folder_of_colour_pictures(tmp_path, capsys, one_torch_thread):
    """`lookalike demo --data FOLDER`: train, export, serve, index, query, sheets, on the user's own files."""
    import numpy as np

    from lookalike_cli.main import main as lookalike

    rng = np.random.default_rng(0)
    folder = tmp_path / "My Shop"
    for kind, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (folder / kind).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(colour, 40, size=(40 + i, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / kind / f"{i}.png")
    workdir = tmp_path / "out"
    assert lookalike(["demo", "--data", str(folder), "--workdir", str(workdir), "--epochs", "1", "--queries", "4"]) == 0
    out = capsys.readouterr().out
    assert "exported" in out and str(workdir / "models" / "my-shop" / "1") in out
    assert "precision@10, autoencoder embeddings :" in out and "n/a" not in out
    for picture in ("results.png", "reconstructions.png", "copies.png"):
        assert Image.open(workdir / picture).size[0] > 112
    assert "the original came back first for" in out
