"""``python -m rwsgi``: the same as the ``rwsgi`` command."""

import sys

from rwsgi.cli import main

sys.exit(main())
