#!/usr/bin/env python
"""Django's command-line utility for the demo portal.

python examples/django_portal/manage.py demo        # seed (if needed) and print what to try
python examples/django_portal/manage.py runserver 127.0.0.1:8000
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
