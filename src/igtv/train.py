"""``python -m igtv.train ARGS`` (what ``torchrun -m igtv.train`` runs): the same as ``igtv train ARGS``."""

from __future__ import annotations

import sys

from igtv.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
