"""``python -m agora`` runs the ``agora`` command."""

import sys

from agora.cli import main

sys.exit(main())
