"""`lookalike migrate` and `lookalike alias`: a collection moved to a new model version without
downtime (docs/model-upgrades.md), from the command line.

`migrate` starts a reindex (or follows one with --resume), shows its phases as progress bars (one
line per phase when stdout is not a terminal), prints the migration report's table and writes it,
with its picture, to --report; with --switch the server switches the alias when the report passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lookalike.client import SearchClient
from lookalike.v1 import search_pb2
from training.progress import Phase

STATES = {v: k.removeprefix("STATE_").lower() for k, v in search_pb2.Operation.State.items()}


def parse_model(text: str) -> tuple[str, int]:
    """"digits:2" -> ("digits", 2); "digits" -> ("digits", 0), the newest version."""
    name, _, version = text.partition(":")
    if not name or (version and not version.isdigit()):
        raise ValueError(f"--to-model takes NAME or NAME:VERSION, got {text!r}")
    return name, int(version or 0)


def migrate(client: SearchClient, args) -> int:
    if args.resume:
        operation = client.get_operation(args.resume)
    else:
        model, version = parse_model(args.to_model)
        alias = _alias_to_switch(client, args) if args.switch else ""
        operation = client.start_reindex(
            args.collection,
            model,
            version,
            target_collection=args.target,
            switch_alias=alias,
            require_no_worse_copy_recall=args.require_no_worse_copy_recall,
            max_copy_recall_drop=args.max_copy_recall_drop,
            report_sample=args.sample,
            label_prefix=args.label_prefix,
            max_images_per_second=args.images_per_second,
        )
        print(f"{operation.name}: re-embedding {operation.source_collection!r} with "
              f"{operation.model.name} v{operation.model.version} into {operation.target_collection!r}")
    operation = _follow(client, operation, progress=not args.no_progress)
    state = STATES[operation.state]
    if operation.state != search_pb2.Operation.STATE_SUCCEEDED:
        why = f": {operation.error_message} ({operation.error_reason})" if operation.error_message else ""
        print(f"{operation.name} {state}{why}", file=sys.stderr)
        return 1
    if operation.items_without_source:
        print(f"{operation.items_without_source} items kept no picture and are not in {operation.target_collection!r}, "
              f"e.g. {', '.join(operation.ids_without_source[:5])}")
    print(operation.report.table)
    _write_report(operation, args.report)
    if operation.switch_alias:
        if operation.switched:
            print(f"alias {operation.switch_alias!r} now points at {operation.target_collection!r}; "
                  f"roll back with: lookalike alias rollback {operation.switch_alias}")
        else:
            print(f"alias {operation.switch_alias!r} not switched: {operation.switch_refused}")
            return 2
    return 0


def _alias_to_switch(client: SearchClient, args) -> str:
    """--alias, or --collection when it is an alias; exits with a hint when there is none."""
    if args.alias:
        return args.alias
    if any(alias.name == args.collection for alias in client.list_aliases()):
        return args.collection
    sys.exit(
        f"lookalike migrate: --switch needs an alias, and {args.collection!r} is a collection: name one with --alias "
        f"(made if missing), and let clients use it (`lookalike alias set NAME {args.collection}`)"
    )


def _follow(client: SearchClient, operation: search_pb2.Operation, progress: bool) -> search_pb2.Operation:
    """Polls until done, one progress phase per phase of the operation."""
    phase: Phase | None = None
    current, done_items, total = "", 0, 0  # counted here: a bar that is off counts nothing

    def finish() -> None:
        if phase is not None:
            phase.finish(f"{current}: {done_items}/{total} items")

    def show(now: search_pb2.Operation) -> None:
        nonlocal phase, current, done_items, total
        if now.phase != current:
            finish()
            current, done_items, total = now.phase, 0, now.items_total
            phase = Phase(now.phase, total=max(total, 1), unit="item", progress=progress)
        if now.items_total:
            total = phase.bar.total = now.items_total
        phase.update(max(0, now.items_copied - done_items))
        done_items = max(done_items, now.items_copied)

    try:
        return client.wait_for_operation(operation.name, poll_seconds=0.2, on_progress=show)
    finally:
        finish()


def _write_report(operation: search_pb2.Operation, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(operation.report.table)
    (folder / "report.png").write_bytes(operation.report.png)
    print(f"report: {folder / 'report.md'}, {folder / 'report.png'}")


def alias(client: SearchClient, args) -> int:
    if args.action == "list":
        for each in client.list_aliases():
            before = f" (before: {each.previous_collection})" if each.previous_collection else ""
            print(f"{each.name} -> {each.collection}{before}")
    elif args.action == "set":
        existing = {a.name: a for a in client.list_aliases()}
        if args.name in existing:
            done = client.switch_alias(args.name, args.collection)
        else:
            done = client.create_alias(args.name, args.collection)
        print(f"{done.name} -> {done.collection}")
    elif args.action == "rollback":
        current = next((a for a in client.list_aliases() if a.name == args.name), None)
        if current is None or not current.previous_collection:
            sys.exit(f"lookalike alias rollback: {args.name!r} {'was never switched' if current else 'is no alias'}")
        done = client.switch_alias(args.name, current.previous_collection, expected_collection=current.collection)
        print(f"{done.name} -> {done.collection} (was {done.previous_collection})")
    elif args.action == "delete":
        client.delete_alias(args.name)
        print(f"alias {args.name!r} deleted; its collection stays")
    return 0
