"""`kjs dev`'s ready line: the console's link carries the key in the fragment, and the line
still ends with the export a shell can paste (tests/docs reads the key from it)."""

from __future__ import annotations

from core.settings import ApiSettings
from kjs.dev import ready_line


def test_the_ready_line_links_the_console_with_the_key_in_the_fragment() -> None:
    line = ready_line(12.3, ApiSettings(), "kjs_abc")
    assert " | console http://127.0.0.1:8080/ui/#key=kjs_abc | " in line
    assert line.endswith("tenant 'dev': export KJS_API_KEY=kjs_abc")


def test_without_a_key_the_console_says_it_needs_authentication() -> None:
    line = ready_line(1.0, ApiSettings(), None)
    assert "console http://127.0.0.1:8080/ui/ (needs authentication on)" in line
    assert "#key=" not in line
