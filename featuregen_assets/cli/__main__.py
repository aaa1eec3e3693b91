"""`python -m featuregen_assets.cli`."""

import sys

from featuregen_assets.cli import main

sys.exit(main())
