"""The console ships everything it serves, and fetches nothing at run time: the vendored htmx
is the one its NOTICE names, every asset is package data, and no page loads anything from
another host."""

from __future__ import annotations

import hashlib
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
NOTICE = (CONSOLE / "static" / "NOTICE").read_text()


def test_the_vendored_htmx_is_the_version_the_notice_names() -> None:
    digest = hashlib.sha256((CONSOLE / "static" / "htmx.min.js").read_bytes()).hexdigest()
    assert f"sha256 {digest}" in NOTICE
    assert re.search(r"htmx 2\.0\.\d+", NOTICE)
    assert "Zero-Clause BSD" in NOTICE


def test_every_template_and_asset_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["console"]
    shipped = [
        p.relative_to(CONSOLE).as_posix()
        for folder in ("templates", "static")
        for p in (CONSOLE / folder).iterdir()
    ]
    assert shipped
    for name in shipped:
        assert any(fnmatch(name, pattern) for pattern in patterns), name


def test_no_page_loads_anything_from_another_host() -> None:
    for path in [*(CONSOLE / "templates").glob("*.html"), *(CONSOLE / "static").glob("*.css")]:
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path.name
        assert "@import" not in text and "url(http" not in text, path.name
