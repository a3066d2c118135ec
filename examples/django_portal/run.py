"""Start the Django demo portal on 127.0.0.1 in one command.

    python examples/django_portal/run.py [--port 8000] [--data-dir DIR] [--reset]

It seeds the demo on first run (a firm whose client portal enables every sign-in method, a few
parties, and a separate staff portal with a password account; simulate mode, so every message
lands in the feed staff can read), prints the URL and what to try, and serves the site with
Django's development server (no auto-reload). The SQLite file and the server keys live in
``--data-dir`` (default: ``portalauth-django-demo`` in the system's temporary directory).
``PORT`` in the environment sets the default port; ``DEMO_CLOCK_FILE`` names a file holding a
number of seconds to move the demo's clock forward (for trying an expired code).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--reset", action="store_true", help="start again from a fresh seed")
    args = parser.parse_args()
    if args.data_dir is not None:
        os.environ["DEMO_DATA_DIR"] = str(args.data_dir.resolve())
    os.environ["DEMO_BASE_URL"] = f"http://{args.host}:{args.port}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    sys.path.insert(0, str(HERE))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("demo", *(["--reset"] if args.reset else []))
    call_command("runserver", f"{args.host}:{args.port}", use_reloader=False)


if __name__ == "__main__":
    main()
