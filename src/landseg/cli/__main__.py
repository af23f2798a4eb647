"""``python -m landseg.cli``: the same as the ``landseg`` command."""

import sys

from landseg.cli.main import app

sys.exit(app())
