"""The API contract in protos/: `buf lint` passes and nothing breaks the last committed protos.

buf (the npm package @bufbuild/buf, a devDependency of tests/node) reads buf.yaml at the
repository root. `buf breaking` compares the working tree with the protos of the last commit
that changed them, through buf's git input (`<git dir>#ref=<sha>,subdir=protos`), so an edit
that would break clients (a deleted or renumbered field, a changed type) fails here before it
is committed. A deliberately broken copy of the protos proves the check is live.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "tests/node/node_modules/.bin/buf"  # the one place that says where buf lives


@pytest.fixture(scope="module")
def buf_env(tmp_path_factory) -> dict[str, str]:
    if not BUF.exists():
        pytest.fail(f"{BUF.relative_to(ROOT)} is missing: `make test` installs buf (tests/node/package.json) with npm ci")
    if shutil.which("node") is None:
        pytest.fail(f"node is needed to run buf's launcher {BUF.relative_to(ROOT)}: install Node.js, then `make test`")
    # buf's cache (the clone of the git reference) in a tmp dir, not the user's ~/.cache.
    return {**os.environ, "BUF_CACHE_DIR": str(tmp_path_factory.mktemp("buf-cache"))}


def buf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUF), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def git(*args: str) -> str:
    run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        pytest.fail(f"`git {' '.join(args)}` failed; buf breaking needs the git history of protos/: {run.stderr}")
    return run.stdout.strip()


@pytest.fixture(scope="module")
def reference() -> str:
    """The protos of the last commit that changed them, as a buf git input."""
    sha = git("log", "-1", "--format=%H", "--", "protos/")
    assert sha, "no commit has changed protos/ yet: nothing to compare with"
    # The common git dir rather than `.git`, so the test also works in a `git worktree` checkout.
    git_dir = git("rev-parse", "--path-format=absolute", "--git-common-dir")
    return f"{git_dir}#ref={sha},subdir=protos"


def violations(run: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def test_buf_lint_passes(buf_env):
    run = buf(buf_env, "lint")
    assert run.returncode == 0, f"buf lint (buf.yaml at the repository root):\n{run.stdout}{run.stderr}"


def test_no_breaking_change_against_the_last_committed_protos(buf_env, reference):
    run = buf(buf_env, "breaking", "--against", reference)
    assert run.returncode == 0, f"buf breaking --against {reference}:\n{run.stdout}{run.stderr}"


def copy_of_the_api(tmp_path: Path) -> Path:
    """buf.yaml and protos/ in a tmp dir: a workspace of its own, with the repository's rules."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    return tmp_path


def test_buf_breaking_catches_a_deleted_field(buf_env, reference, tmp_path):
    workspace = copy_of_the_api(tmp_path)
    search_proto = workspace / "protos/lookalike/v1/search.proto"
    text = search_proto.read_text()
    field = "  string uri = 5;\n"  # Item.uri, the only field numbered 5 named uri
    assert text.count(field) == 1, "Item.uri changed: pick another field to delete"
    search_proto.write_text(text.replace(field, ""))

    run = buf(buf_env, "breaking", str(workspace), "--against", reference, "--error-format", "json")
    assert run.returncode != 0, f"buf breaking missed a deleted field:\n{run.stdout}{run.stderr}"
    found = violations(run)
    assert [(v["type"], v["message"]) for v in found] == [
        ("FIELD_NO_DELETE", 'Previously present field "5" with name "uri" on message "Item" was deleted.')
    ], run.stdout
    assert found[0]["path"].endswith("protos/lookalike/v1/search.proto")


def test_buf_lint_is_live_outside_the_documented_exceptions(buf_env, tmp_path):
    """The exceptions in buf.yaml are narrow: elsewhere a missing comment or enum prefix still fails."""
    workspace = copy_of_the_api(tmp_path)
    images_proto = workspace / "protos/lookalike/v1/images.proto"
    images_proto.write_text(images_proto.read_text() + "\nmessage Undocumented {}\n\n// A colour.\nenum Colour {\n"
                            "  // Not set.\n  COLOUR_UNSPECIFIED = 0;\n  // Red.\n  RED = 1;\n}\n")

    run = buf(buf_env, "lint", str(workspace), "--error-format", "json")
    assert run.returncode != 0, f"buf lint missed an uncommented message:\n{run.stdout}{run.stderr}"
    assert sorted(v["type"] for v in violations(run)) == ["COMMENT_MESSAGE", "ENUM_VALUE_PREFIX"], run.stdout
