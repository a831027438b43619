"""A script's output is bounded as it arrives, and stored as JSON per stream."""

from __future__ import annotations

import json

from workers.targets.capture import STDERR, STDOUT, BoundedBuffer, CapturingProtocol


def test_a_buffer_keeps_up_to_its_limit_and_counts_the_rest() -> None:
    buffer = BoundedBuffer(limit=5)
    for chunk in (b"abc", b"defgh", b"ij"):
        buffer.add(chunk)
    assert bytes(buffer.kept) == b"abcde"
    assert buffer.total == 10 and buffer.truncated


def test_the_excerpt_keeps_streams_apart_and_their_sizes() -> None:
    protocol = CapturingProtocol(limit=4)
    protocol.pipe_data_received(STDOUT, b"hello world")
    protocol.pipe_data_received(STDERR, b"--- stdout ---")
    body = json.loads(protocol.excerpt(3))
    assert body == {
        "exit_code": 3,
        "stdout": "hell",
        "stdout_bytes": 11,
        "stderr": "--- ",
        "stderr_bytes": 14,
    }


def test_a_character_cut_by_the_limit_is_dropped_not_mangled() -> None:
    protocol = CapturingProtocol(limit=3)
    protocol.pipe_data_received(STDOUT, "aé€".encode())  # 1 + 2 + 3 bytes
    assert json.loads(protocol.excerpt(0))["stdout"] == "aé"
