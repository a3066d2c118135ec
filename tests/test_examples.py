"""The examples: README's first command (the Flask demo portal) and the core-only sign-in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_readme_demo_serves_the_portal_and_prints_what_to_try() -> None:
    """``python examples/flask_portal/app.py``: starts on 127.0.0.1 and prints the URL, the
    seeded share code, a PIN and the staff login; the sign-in pages answer."""
    pytest.importorskip("flask")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "flask_portal" / "app.py")],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Stop with Ctrl+C"):
                break
        banner = "".join(lines)
        failed = proc.poll() is not None and proc.stderr is not None
        assert f"http://127.0.0.1:{port}/" in banner, proc.stderr.read() if failed else banner
        assert "share code" in banner and "PIN" in banner and "staff login" in banner
        url = f"http://127.0.0.1:{port}/auth/"
        for _ in range(100):  # the banner is printed just before the server starts
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"the demo did not answer on {url}")
        assert "Sign in with a share code" in page and "Sign in with a password" in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    db = next(line for line in lines if "SQLite file" in line).split("SQLite file ")[1]
    assert not Path(db.split(",")[0]).parent.exists()  # the demo removed its temporary files
