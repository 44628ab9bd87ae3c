"""Entry point of ``python -m fpga``; see :mod:`fpga.cli` for the options."""

import sys

from .cli import main


sys.exit(main())
