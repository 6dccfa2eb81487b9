"""``python -m domainfit.cli``, as ``python -m domainfit`` and the ``domainfit`` command."""

import sys

from domainfit.cli import main

sys.exit(main())
