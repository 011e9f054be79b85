"""Regenerate the Python stubs of the API: `make protos` (or this script).

The stubs are committed in `lookalike/v1/`; tests/test_generated_code.py fails
when they differ from what this script produces, so nobody edits them by hand.
Output paths are rooted at the package (`-I protos`), so generated imports read
`from lookalike.v1 import images_pb2` with no post-processing.
"""

import argparse
import pathlib
import sys

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTO_ROOT.glob("lookalike/v1/*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT, help="output root (default: the repository)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
