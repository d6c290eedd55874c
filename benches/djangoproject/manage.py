"""``manage.py`` of the bench project, for ``runserver`` and ``rwsgi_serve``
(``benches/django_static.py`` runs it with ``benches/`` as the working
directory). It sits inside the package, not beside it as startproject puts
it, so the project stays one folder; it puts that folder's parent on
``sys.path`` itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
