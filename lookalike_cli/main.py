"""The `lookalike` command line: train, export, eval, serve, index, bulk-embed, query, migrate, alias, demo, token.

Every subcommand has --help. Server flags also read LOOKALIKE_ENCODER_* and
LOOKALIKE_SEARCH_* variables; client addresses read LOOKALIKE_ENCODER_ADDRESS
and LOOKALIKE_SEARCH_ADDRESS, the bearer token LOOKALIKE_TOKEN, and TLS files
LOOKALIKE_TLS_CA, LOOKALIKE_TLS_CERT and LOOKALIKE_TLS_KEY. Heavy imports (torch,
servers) happen inside the subcommand that needs them, so `lookalike query`
starts fast and serving never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pydantic_settings import CliSettingsSource

from encoder_service.settings import EncoderSettings
from search_service.settings import SearchSettings


def _client_flags(parser: argparse.ArgumentParser, *, optional_search: bool = False) -> None:
    """`optional_search`: --search has no default, for a command that calls the service only when given one."""
    if optional_search:
        parser.add_argument("--search", help="search service address; without it, nothing is sent")
    else:
        parser.add_argument(
            "--search",
            default=os.environ.get("LOOKALIKE_SEARCH_ADDRESS", "localhost:50052"),
            help="search service address (env LOOKALIKE_SEARCH_ADDRESS; default %(default)s)",
        )
    parser.add_argument("--collection", default="digits", help="collection name (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline of each call, seconds (default %(default)s)")
    parser.add_argument(
        "--tls-ca",
        type=Path,
        default=os.environ.get("LOOKALIKE_TLS_CA"),
        help="CA certificate (PEM) that signed the server's; turns TLS on (env LOOKALIKE_TLS_CA)",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=os.environ.get("LOOKALIKE_TLS_CERT"),
        help="client certificate (PEM), for servers that require mutual TLS (env LOOKALIKE_TLS_CERT)",
    )
    parser.add_argument("--tls-key", type=Path, default=os.environ.get("LOOKALIKE_TLS_KEY"), help="its private key (env LOOKALIKE_TLS_KEY)")
    # The token has no flag: a flag's value shows in `ps` and shell history.
    parser.epilog = "The bearer token sent with every call comes from the LOOKALIKE_TOKEN variable."


def _connection(args) -> dict:
    """The TLS credentials and token of a client command, as keyword arguments of the typed clients."""
    from lookalike.client import tls_credentials

    return {"credentials": tls_credentials(args.tls_ca, args.tls_cert, args.tls_key), "token": os.environ.get("LOOKALIKE_TOKEN")}


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="lookalike", description="Search by image: train, serve, index and query.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    settings_sources = {}

    train = commands.add_parser("train", help="train an autoencoder (needs the [train] extra)")
    export = commands.add_parser("export", help="export a checkpoint to ONNX into the model repository")
    evaluate = commands.add_parser("eval", help="the study: every architecture and baseline, measured, as a report")
    from training import cli as training_cli  # argparse setup only; torch is imported when a command runs

    training_cli.add_train_arguments(train)
    training_cli.add_export_arguments(export)
    training_cli.add_eval_arguments(evaluate)

    encoder = commands.add_parser(
        "serve-encoder", help="serve the encoder service", description="Flags also read LOOKALIKE_ENCODER_<FLAG> variables."
    )
    settings_sources["serve-encoder"] = (EncoderSettings, CliSettingsSource(EncoderSettings, root_parser=encoder))
    search = commands.add_parser(
        "serve-search", help="serve the search service", description="Flags also read LOOKALIKE_SEARCH_<FLAG> variables."
    )
    settings_sources["serve-search"] = (SearchSettings, CliSettingsSource(SearchSettings, root_parser=search))

    index = commands.add_parser("index", help="index every image under a folder")
    index.add_argument("folder", type=Path, help="folder to walk recursively")
    _client_flags(index)
    index.add_argument("--model", default="", help="encoder model for a new collection (default: the encoder's default)")
    index.add_argument("--batch-size", type=int, default=64, help="images per message of the upsert stream (default %(default)s)")
    index.add_argument(
        "--stream-items",
        type=int,
        default=4096,
        help="most images sent on one upsert stream before its answers are awaited; a failed stream resends at most these "
        "(default %(default)s: one write of the search service's default max_stream_record_items)",
    )
    index.add_argument(
        "--find-copies",
        action="store_true",
        help="a new collection keeps a fingerprint of every picture, for `lookalike query --copies` (about 20-30 KB per picture)",
    )
    index.add_argument(
        "--keep-sources",
        action="store_true",
        help="a new collection keeps every picture, so `lookalike migrate` can re-embed it with a new model version later",
    )
    index.add_argument(
        "--copy-thresholds",
        type=Path,
        metavar="FILE",
        help="with --find-copies: a new collection decides copies with these thresholds (JSON; `lookalike eval` writes one per "
        "model to REPORT/copy_thresholds/MODEL.json) instead of the defaults",
    )
    index.add_argument("--tag", action="append", default=[], help="tag every item with this (repeatable)")
    index.add_argument("--no-folder-tags", action="store_true", help="do not tag items with folder:<subfolder>")
    index.add_argument("--skip-existing", action="store_true", help="leave ids already in the collection alone (resumes a stopped run)")
    index.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries of a call that failed for a passing reason (server down, busy, slow), 1 s, 2 s, 4 s... apart (default %(default)s)",
    )
    index.add_argument(
        "--left-list",
        type=Path,
        default=Path("lookalike-index-left.txt"),
        help="where a stopped run lists the files it did not send, one path a line (default %(default)s)",
    )

    bulk = commands.add_parser(
        "bulk-embed",
        help="embed a catalogue of up to 10^8 files on Ray into Parquet parts, and optionally a collection (needs the [bulk] extra)",
        description="Reads SOURCE's files on Ray Data, decodes them with the encoder's preprocessing, embeds them in a pool of "
        "ONNX Runtime actors and writes the vectors to DIR as Parquet parts; with --search, sends each part to --collection. "
        "A rerun with the same DIR resumes. docs/bulk-embedding.md.",
    )
    from lookalike_cli import bulk_embed  # argparse setup only; Ray is imported when the command runs

    bulk_embed.add_arguments(bulk)
    _client_flags(bulk, optional_search=True)

    query = commands.add_parser("query", help="find the images most like IMAGE")
    query.add_argument("image", type=Path, help="the query image file")
    _client_flags(query)
    query.add_argument("-k", type=int, default=10, help="number of results (default %(default)s)")
    query.add_argument("--all-of", action="append", default=[], help="results carry this tag (repeatable)")
    query.add_argument("--none-of", action="append", default=[], help="results do not carry this tag (repeatable)")
    query.add_argument("--sheet", type=Path, help="write a contact sheet PNG of the query and its results here")
    query.add_argument(
        "--copies",
        action="store_true",
        help="find the stored pictures IMAGE is a copy of (exact or edited: cropped, captioned, mirrored...), with a verdict "
        "each; with --sheet, the sheet shows where each original matches and what the copy edited",
    )
    query.add_argument("--similar", action="store_true", help="with --copies: list similar pictures too, not only copies")
    query.add_argument("--earliest-first", action="store_true", help="with --copies: earliest timestamp first (the likeliest original)")

    migrate = commands.add_parser(
        "migrate",
        help="move a collection to another model version: re-embed it in the background, report both versions, switch its alias",
        description="Re-embeds every item of --collection (which must keep its sources: `lookalike index --keep-sources`) with "
        "--to-model into a new collection while the live one keeps serving, then compares both versions on the collection's "
        "own items and their edited copies (docs/model-upgrades.md). With --switch, the alias moves when the report passes.",
    )
    _client_flags(migrate)
    migrate.add_argument("--to-model", metavar="NAME[:VERSION]", help="the new model version (no version: the newest loaded)")
    migrate.add_argument("--switch", action="store_true", help="switch the alias to the new collection when the report passes the policy")
    migrate.add_argument("--alias", default="", help="the alias to switch (default: --collection, when it is an alias)")
    migrate.add_argument(
        "--require-no-worse-copy-recall", action="store_true", help="switch only if copy recall@1 does not fall (more than --max-copy-recall-drop)"
    )
    migrate.add_argument("--max-copy-recall-drop", type=float, default=0.0, help="tolerated fall of copy recall@1, 0 to 1 (default %(default)s)")
    migrate.add_argument("--target", default="", help="the new collection's name (default: COLLECTION.MODEL-vVERSION)")
    migrate.add_argument("--sample", type=int, default=0, help="items the report samples (default: the server's, 200)")
    migrate.add_argument("--label-prefix", default="", help="tags with this prefix are labels: the report adds precision@10 (e.g. folder:)")
    migrate.add_argument("--images-per-second", type=float, default=0.0, help="most images re-embedded per second (default: the server's)")
    migrate.add_argument("--report", type=Path, default=Path("migration-report"), help="folder for report.md and report.png (default %(default)s)")
    migrate.add_argument("--resume", metavar="OPERATION", help="follow operations/ID, started earlier, instead of starting one")
    migrate.add_argument("--no-progress", action="store_true", help="no progress bars, one line per phase")

    alias = commands.add_parser("alias", help="list aliases, point one at a collection, roll one back")
    _client_flags(alias)
    alias_actions = alias.add_subparsers(dest="action", required=True, metavar="ACTION")
    alias_actions.add_parser("list", help="every alias and the collection it points at")
    set_alias = alias_actions.add_parser("set", help="create the alias NAME, or switch it, to COLLECTION")
    set_alias.add_argument("name")
    set_alias.add_argument("collection")
    rollback = alias_actions.add_parser("rollback", help="point NAME back at the collection it pointed at before its last switch")
    rollback.add_argument("name")
    delete_alias = alias_actions.add_parser("delete", help="delete the alias NAME (not its collection)")
    delete_alias.add_argument("name")

    backup = commands.add_parser(
        "backup",
        help="write a backup of a collection, as of now, to a file (writes go on meanwhile)",
        description="Writes a backup of --collection (its settings and a snapshot taken for the occasion: every "
        "acknowledged item with its vector, tags, uri, attributes and copy fingerprint; not kept sources) to OUT. "
        "Needs an admin token. On a sharded deployment, back up each shard: docs/operations.md.",
    )
    _client_flags(backup)
    backup.add_argument("out", type=Path, help="the backup file to write")
    backup.add_argument("--no-progress", action="store_true", help="no progress bar, one line when done")
    restore = commands.add_parser(
        "restore",
        help="create a collection from a backup file",
        description="Creates the collection --collection from BACKUP (written by `lookalike backup`). The server "
        "checks the file whole before the collection appears: a damaged file creates nothing. Needs an admin token.",
    )
    _client_flags(restore)
    restore.add_argument("backup", type=Path, help="the backup file")
    restore.add_argument("--no-progress", action="store_true", help="no progress bar, one line when done")

    token = commands.add_parser("token", help="make bearer tokens for the servers' tokens files")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    new_token = token_actions.add_parser(
        "new",
        help="print a new token once and append its hash to a tokens file",
        description="Prints a new random token once, on stdout, and appends its SHA-256 to the tokens file; servers read the file when they start.",
    )
    new_token.add_argument("--permission", choices=["read", "write", "admin"], required=True, help="what the token may do (docs/security.md)")
    new_token.add_argument("--tokens-file", type=Path, required=True, help="a server's tokens_file; made when missing")

    demo = commands.add_parser("demo", help="train, export, serve, index and query end to end: the digits or your own folder")
    demo.add_argument("--workdir", type=Path, default=Path("demo-output"), help="where everything goes (default %(default)s)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the tuned default)")
    demo.add_argument(
        "--data",
        default="digits",
        help="'digits' (the bundled MNIST digits) or your own folder of pictures, one sub-folder per kind "
        "(trains 64x64 RGB; the held-out fifth are the queries) (default %(default)s)",
    )
    demo.add_argument("--queries", type=int, default=1000, help="held-out pictures to query with (default %(default)s)")
    return parser, settings_sources


def main(argv: list[str] | None = None) -> int:
    parser, settings_sources = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # reports record the command that made them
    if args.command in settings_sources:
        settings_cls, source = settings_sources[args.command]
        settings = settings_cls(_cli_settings_source=source(parsed_args=args))
        from server_toolkit import logs

        logs.configure(settings.log_level)
        try:
            if args.command == "serve-encoder":
                from encoder_service.server import serve
            else:
                from search_service.server import serve
        except ImportError as missing:
            sys.exit(f"lookalike {args.command}: {missing.name} is missing; install the servers with `pip install 'lookalike[server]'`")
        from server_toolkit.security import InsecureSettings

        refusals: tuple[type[Exception], ...] = (InsecureSettings,)
        if args.command == "serve-encoder":
            from encoder_service.execution_providers import DeviceUnavailable

            refusals += (DeviceUnavailable,)
        try:
            serve(settings)
        except refusals as refused:
            sys.exit(f"lookalike {args.command}: {refused}")
        return 0
    return COMMANDS[args.command](args)


def _train(args) -> int:
    from training import cli as training_cli

    training_cli.run_train(args)  # prints its own summary
    return 0


def _export(args) -> int:
    from training import cli as training_cli

    training_cli.run_export(args)  # prints its own summary
    return 0


def _eval(args) -> int:
    from training import cli as training_cli

    training_cli.run_eval(args)  # prints its own summary
    return 0


def _copy_thresholds(args) -> dict | None:
    if args.copy_thresholds is None:
        return None
    if not args.find_copies:
        sys.exit("lookalike index: --copy-thresholds goes with --find-copies")
    try:
        return json.loads(args.copy_thresholds.read_text())
    except (OSError, ValueError) as error:
        sys.exit(f"lookalike index: cannot read {args.copy_thresholds}: {error}")


def _index(args) -> int:
    from lookalike.client import SearchClient
    from lookalike.errors import NotFound
    from lookalike.v1 import search_pb2
    from lookalike_cli.indexing import backoff, index_folder

    if not args.folder.is_dir():
        sys.exit(f"lookalike index: {args.folder} is not a folder")
    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        try:  # an existing collection needs only a write token; creating one needs admin
            collection = client.get_collection(args.collection)
            if args.copy_thresholds is not None:
                print(f"lookalike index: {args.collection!r} exists; it keeps the copy thresholds it was made with", file=sys.stderr)
        except NotFound:
            collection = client.create_collection(
                args.collection,
                model=args.model,
                allow_existing=True,
                find_copies=args.find_copies,
                copy_thresholds=_copy_thresholds(args),
                keep_sources=args.keep_sources,
            )
        if collection.state == search_pb2.Collection.STATE_DAMAGED:
            sys.exit(f"lookalike index: collection {collection.name!r} is damaged ({collection.state_reason}); nothing was sent")
        print(f"collection {collection.name!r}: {collection.dimension}-d, model {collection.model.name} v{collection.model.version}")
        report = index_folder(
            client,
            args.collection,
            args.folder,
            batch_size=args.batch_size,
            stream_items=args.stream_items,
            tags=tuple(args.tag),
            folder_tags=not args.no_folder_tags,
            skip_existing=args.skip_existing,
            retry_delays=backoff(args.retries),
        )
    print(report.summary())
    if report.stopped:
        left_list = args.left_list.resolve()
        try:
            left_list.write_text("".join(f"{path}\n" for path in report.left))
            listed = f"listed in {left_list}"
        except OSError as error:  # the summary above still counts them
            listed = f"not listed: {left_list}: {error.strerror}"
        sys.exit(
            f"lookalike index: stopped early ({report.stopped}); {len(report.left)} files left, {listed}. "
            "Run the same command with --skip-existing to resume."
        )
    return 0


def _bulk_embed(args) -> int:
    from lookalike_cli import bulk_embed

    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError as missing:
        sys.exit(f"lookalike bulk-embed: {missing.name} is missing; install it with `pip install 'lookalike[bulk]'`")
    return bulk_embed.run(args, _connection(args))


def _query(args) -> int:
    from lookalike_cli.querying import sheet_row, table
    from lookalike.client import SearchClient
    from lookalike.contact_sheet import render

    data = args.image.read_bytes()
    if args.copies:
        return _query_copies(args, data)
    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        neighbors = client.search(args.collection, image=data, k=args.k, all_of=args.all_of, none_of=args.none_of)
    print(table(neighbors))
    if args.sheet:
        render([sheet_row(data, neighbors)]).save(args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


def _query_copies(args, data: bytes) -> int:
    from lookalike.client import SearchClient
    from lookalike_cli import copies

    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        response = client.find_copies(
            args.collection,
            image=data,
            k=args.k,
            all_of=args.all_of,
            none_of=args.none_of,
            include_similar=args.similar,
            edit_pictures=args.sheet is not None,
            earliest_first=args.earliest_first,
        )
    print(copies.table(response))
    if args.sheet:
        copies.sheet(data, response).save(args.sheet)
        print(f"sheet: {args.sheet}")
    return 0


def _migrate(args) -> int:
    from lookalike.client import SearchClient
    from lookalike_cli import migrating

    if not args.to_model and not args.resume:
        sys.exit("lookalike migrate: name the new model version with --to-model NAME[:VERSION] (or follow one with --resume)")
    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        return migrating.migrate(client, args)


def _alias(args) -> int:
    from lookalike.client import SearchClient
    from lookalike_cli import migrating

    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        return migrating.alias(client, args)


def _backup(args) -> int:
    from lookalike.client import SearchClient
    from lookalike_cli import backing_up

    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        return backing_up.backup(client, args.collection, args.out, progress=not args.no_progress)


def _restore(args) -> int:
    from lookalike.client import SearchClient
    from lookalike_cli import backing_up

    with SearchClient(args.search, timeout=args.timeout, **_connection(args)) as client:
        return backing_up.restore(client, args.backup, args.collection, progress=not args.no_progress)


def _demo(args) -> int:
    from lookalike_cli.demo import run_demo

    return run_demo(args.workdir, data=args.data, epochs=args.epochs, queries=args.queries)


def _token(args) -> int:
    from server_toolkit.auth import Permission, add_token

    token = add_token(args.tokens_file, Permission[args.permission.upper()])
    print(f"appended the hash of a new {args.permission} token to {args.tokens_file} (restart the servers that read it);", file=sys.stderr)
    print("the token, shown this once:", file=sys.stderr)
    print(token)  # alone on stdout, so `> file` keeps just the token
    return 0


COMMANDS = {
    "train": _train,
    "export": _export,
    "eval": _eval,
    "index": _index,
    "bulk-embed": _bulk_embed,
    "query": _query,
    "migrate": _migrate,
    "alias": _alias,
    "backup": _backup,
    "restore": _restore,
    "token": _token,
    "demo": _demo,
}


def run() -> int:
    """The console entry point: a refused call prints its status and reason, not a traceback."""
    from lookalike.errors import LookalikeError

    try:
        return main()
    except LookalikeError as error:
        fields = ", ".join(v.field for v in error.field_violations if v.field)
        where = f" [{fields}]" if fields else ""
        reason = f" {error.reason}" if error.reason else ""
        print(f"lookalike: {error.code.name}{reason}{where}: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
