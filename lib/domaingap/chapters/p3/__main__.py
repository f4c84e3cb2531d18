"""``python -m domaingap.chapters.p3 --profile default``: every P3 sweep (pretrain, finetune, similarity), without
the notebooks; ``--list`` lists them and how many runs are cached (see :mod:`domaingap.chapters.cli`)."""

import sys

from ..cli import main

sys.exit(main("p3"))
