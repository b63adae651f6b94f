"""A wheel of wch, installed (not editable) into a fresh virtual environment, serves the whole panel.

This is how a container image or ``pip install .`` installs wch: nothing of
the source checkout is on the path, so templates, CSS, JavaScript, the chart
and the migrations must all come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run by the installed interpreter, from a folder outside the checkout.
PANEL_CHECK = r"""
import sys
import wch
from wch import create_app
from wch.db import transaction
from wch.staff import create_user

assert "site-packages" in wch.__file__, wch.__file__
app = create_app()
assert "site-packages" in app.template_folder, app.template_folder
with app.app_context(), transaction():
    create_user("admin@example.com", "correct horse battery", role="admin")
client = app.test_client()
login = client.get("/login")
assert login.status_code == 200 and b'name="csrf_token"' in login.data, login.status_code
token = login.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
answer = client.post("/login", data={"email": "admin@example.com", "password": "correct horse battery",
                                     "csrf_token": token})
assert answer.status_code == 302, answer.status_code
pages = {"/admin/": b"Dashboard", "/admin/jobs/": b"Jobs", "/admin/carts/": b"Carts",
         "/admin/campaigns/": b"Campaigns", "/admin/settings/": b"reminder"}
for url, text in pages.items():
    page = client.get(url)
    assert page.status_code == 200 and text in page.data, (url, page.status_code)
dashboard = client.get("/admin/").data.decode()
for asset in ("css/wch.css", "js/wch.js", "vendor/chartjs/chart.umd.min.js"):
    assert "/static/" + asset in dashboard, asset
    served = client.get("/static/" + asset)
    assert served.status_code == 200 and len(served.data) > 100, asset
print("panel ok")
"""


# What a build reads; copied, because setuptools builds in the source tree and keeps a build/ folder there
# whose leftovers (a module since deleted) would end up in the wheel.
SOURCES = ("wch", "templates", "static", "setup.cfg", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)],
                   check=True, timeout=300)
    (built,) = dist.glob("wch-*.whl")
    return built


def test_the_wheel_holds_every_package_template_and_asset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [path.relative_to(ROOT).as_posix() for path in (ROOT / "wch").rglob("*.py")]
    assets = [f"wch/{path.relative_to(ROOT).as_posix()}" for folder in ("templates", "static")
              for path in (ROOT / folder).rglob("*") if path.is_file()]
    missing = [name for name in sources + assets if name not in names]
    assert not missing, f"left out of the wheel (list the package in setup.cfg): {missing}"


def test_a_non_editable_install_upgrades_the_database_and_renders_the_panel(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", str(wheel)], check=True, timeout=600)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WCH_", "PYTHON"))}
    env |= {"WCH_DATABASE_URL": f"sqlite:///{tmp_path / 'wch.sqlite3'}", "WCH_BROKER_URL": "stub://",
            "WCH_SECRET_KEY": "wheel-test-secret-key"}
    upgrade = subprocess.run([venv / "bin" / "wch", "db", "upgrade"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    check = subprocess.run([venv / "bin" / "python", "-c", PANEL_CHECK], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "panel ok" in check.stdout, check.stderr
