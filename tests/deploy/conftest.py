"""tests/deploy runs only under `make deploy-test` (LOOKALIKE_DEPLOY_TEST=1): it needs docker and built
images, so `make test` does not even collect it."""

import os

if os.environ.get("LOOKALIKE_DEPLOY_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]
