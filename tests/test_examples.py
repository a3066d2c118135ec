"""README's first command: the example signs a party in against SQLite and prints each step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_sign_in_example_runs_every_step(tmp_path: Path) -> None:
    db = tmp_path / "example.db"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sign_in.py"), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(".", 1)[0] for line in lines if line[:1].isdigit()] == [
        str(i) for i in range(1, 11)
    ]
    assert "Signed in as Jane Roe by share_code, scope 'case-42'" in result.stdout
    assert "Signed in as Sam Poe by contact_otp" in result.stdout
    assert "session_invalid" in result.stdout
    assert db.exists() and db.stat().st_size > 0
