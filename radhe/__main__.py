"""``python -m radhe``: radhe's command line (:mod:`radhe.cli`)."""

import sys

from radhe.cli import main

if __name__ == "__main__":
    sys.exit(main())
