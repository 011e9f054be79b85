"""The committed stubs are exactly what tools/generate_protos.py writes from protos/."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_committed_stubs_are_current(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools/generate_protos.py"), "--out", str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "lookalike/v1").glob("*_pb2*"))
    assert fresh == committed, "stub files differ from what `make protos` writes: run it and commit"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"stale generated code, run `make protos`: {stale}"
