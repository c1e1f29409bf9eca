"""``python -m nas_trainer``: see ``nas_trainer.cli``."""

import sys

from nas_trainer.cli import main

sys.exit(main())
