"""``manage.py demo``: seed the demo portal (first run, or ``--reset``) and print what to try."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from demo_site import portal


class Command(BaseCommand):
    help = "Seed the portalauth demo (if it is not seeded yet) and print what to try."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--reset", action="store_true", help="delete the data and seed anew")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reset"]:
            portal.reset()
        auth = portal.get_auth()  # seeds an empty store
        url = portal.base_url()
        share = portal.seeded.get("share_code")
        lines = [
            f"portalauth Django demo: {url}/  (data in {portal.data_dir()})",
            "",
            f"Clients sign in at {url}/sign-in (simulate mode: messages go to the staff feed).",
            "  share_code  Jane Roe: "
            + (f"share code {share}" if share else "share code in her message feed")
            + ", then the code e-mailed to her",
            "  contact_otp Sam Poe: (202) 555-0143 or sam.poe@example.com, then the code",
            "  magic_link  Mia Chen: mia.chen@example.com (her invitation link is in the feed)",
            f"  password    Pat Lee: pat.lee@example.com / {portal.CLIENT_PASSWORD}",
            "  staff_pin   any party: generate a PIN on the staff pages",
            "",
            f"Staff pages at {url}/staff/ : {portal.STAFF_EMAIL} / {portal.STAFF_PASSWORD}",
            f"Parties: {', '.join(p.name for p in auth.directory.list(portal.CLIENT_PORTAL))}",
        ]
        self.stdout.write("\n".join(lines))
