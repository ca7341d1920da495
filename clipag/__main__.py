"""``python -m clipag ...`` (and ``torchrun -m clipag finetune ...``)."""

import sys

from clipag_plugin.cli import main

if __name__ == "__main__":
    sys.exit(main())
