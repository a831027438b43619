"""`kjs dev`'s ready line: the console's link carries the key in the fragment, and the line
still ends with the export a shell can paste (tests/docs reads the key from it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import ApiSettings
from kjs.dev import api_base, ready_line, seal_dev_secrets


def test_the_ready_line_links_the_console_with_the_key_in_the_fragment() -> None:
    line = ready_line(12.3, ApiSettings(), "kjs_abc")
    assert " | console http://127.0.0.1:8080/ui/#key=kjs_abc | " in line
    assert line.endswith("tenant 'dev': export KJS_API_KEY=kjs_abc")


def test_a_wildcard_listen_address_is_dialled_on_loopback() -> None:
    assert api_base(ApiSettings(api_host="0.0.0.0", api_port=9000)) == "http://127.0.0.1:9000"
    assert api_base(ApiSettings(api_host="::", api_port=9000)) == "http://[::1]:9000"
    assert api_base(ApiSettings(api_host="10.1.2.3")) == "http://10.1.2.3:8080"
    line = ready_line(1.0, ApiSettings(api_host="::"), "kjs_abc")
    assert "API http://[::1]:8080 | " in line and "console http://[::1]:8080/ui/#key=" in line


def test_without_a_key_the_console_says_it_needs_authentication() -> None:
    line = ready_line(1.0, ApiSettings(), None)
    assert "console http://127.0.0.1:8080/ui/ (needs authentication on)" in line
    assert "#key=" not in line


def test_the_dev_secret_key_is_private_kept_and_never_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KJS_SECRET_KEYS", raising=False)
    seal_dev_secrets(tmp_path)
    first = os.environ["KJS_SECRET_KEYS"]
    key_file = tmp_path / "dev-secret-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["dev-secret-key"]  # no temp file left
    monkeypatch.delenv("KJS_SECRET_KEYS")
    seal_dev_secrets(tmp_path)
    assert os.environ["KJS_SECRET_KEYS"] == first  # the same key after a restart
    monkeypatch.delenv("KJS_SECRET_KEYS")
    key_file.write_text("")
    with pytest.raises(SystemExit, match="is empty"):
        seal_dev_secrets(tmp_path)
