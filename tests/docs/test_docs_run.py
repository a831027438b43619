"""Every shell block of README.md and docs/*.md runs as printed, against a ``kjs dev`` stack.

A user pastes the blocks of a page into one shell, in order; so does this test: each page's
runnable blocks become one bash script (``set -euo pipefail``, the repository as the working
directory, ``.venv/bin`` on the PATH, ``KJS_API_KEY`` from ``kjs dev``'s ready line), and the
page fails at the first block that fails. A block that cannot run here (``make dev`` itself,
commands for other hosts, benchmarks) is fenced as ```` ```sh no-run: the reason ````.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kjs.client import Client
from tests.waiting import eventually

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>.*)$")
NO_RUN = re.compile(r"\bno-run\b(?::\s*(?P<why>\S.*))?")
READY = re.compile(r"kjs dev ready in .*export KJS_API_KEY=(?P<key>kjs_\S+)")
# `kjs dev` in a clean environment: no key or URL from the developer's shell, no namespace.
CLIENT_ONLY = ("KJS_API_KEY", "KJS_API_URL", "KJS_NAMESPACE")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    info: str
    text: str

    @property
    def language(self) -> str:
        return self.info.split(maxsplit=1)[0] if self.info.strip() else ""

    @property
    def runs(self) -> bool:
        return self.language in SHELLS and NO_RUN.search(self.info) is None


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (indented ones in lists included)."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent = len(opening["indent"])
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith("```"):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        found.append(Block(page, i + 1, opening["info"].strip(), "\n".join(body)))
        i = j + 1
    return found


def script(page_blocks: list[Block]) -> str:
    """One bash script of the page's runnable blocks, saying which one failed."""
    parts = [
        "set -euo pipefail",
        f"cd {str(ROOT)!r}",
        "trap 'echo \"kjs-docs: the block at line $KJS_DOC_LINE failed\" >&2' ERR",
    ]
    for block in page_blocks:
        parts += [f"KJS_DOC_LINE={block.line}", block.text]
    # The variables a check after the page may need (the README's first job).
    parts.append('printf "\\nkjs-docs-env JOB=%s\\n" "${JOB:-}"')
    return "\n".join(parts) + "\n"


def test_pages_have_runnable_blocks_and_every_no_run_says_why() -> None:
    everything = [b for page in PAGES for b in blocks(page)]
    shells = [b for b in everything if b.language in SHELLS]
    assert sum(b.runs for b in shells) >= 10
    for block in shells:
        marker = NO_RUN.search(block.info)
        if marker is not None:
            assert marker["why"], f"{block.page.name}:{block.line}: say why it cannot run"
    readme = [b for b in blocks(ROOT / "README.md") if b.runs]
    assert any("kjs jobs create" in b.text for b in readme)
    assert any("curl" in b.text for b in readme)


def test_the_block_parser_reads_indented_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```sh\necho one\n```\n- item\n\n  ```sh no-run: elsewhere\n  echo two\n  ```\n"
        "```\nplain\n```\n"
    )
    found = blocks(page)
    assert [(b.line, b.text, b.runs) for b in found] == [
        (2, "echo one", True),
        (7, "echo two", False),
        (10, "plain", False),
    ]


@dataclass(frozen=True)
class DevStack:
    key: str
    env: dict[str, str]


@pytest.fixture(scope="module")
async def dev_stack(services: None) -> AsyncIterator[DevStack]:
    """``kjs dev`` as a user runs it, until its one ready line; stopped with Ctrl-C."""
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ONLY}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kjs.cli",
        "dev",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 150)
        ready = READY.search(line.decode())
        assert ready, f"kjs dev printed {line!r} instead of its ready line"
        yield DevStack(ready["key"], {**env, "KJS_API_KEY": ready["key"]})
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_page(page: Path, stack: DevStack) -> dict[str, str]:
    runnable = [b for b in blocks(page) if b.runs]
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script(runnable),
        env=stack.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 150)
    assert proc.returncode == 0, (
        f"{page.name}: exit {proc.returncode}\n--- stdout\n{out.decode()[-3000:]}"
        f"\n--- stderr\n{err.decode()[-3000:]}"
    )
    found = re.search(r"^kjs-docs-env (?P<vars>.*)$", out.decode(), re.MULTILINE)
    assert found is not None
    return dict(pair.split("=", 1) for pair in found["vars"].split())


@pytest.mark.timeout(400)
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
async def test_every_runnable_block_of_the_page_succeeds(dev_stack: DevStack, page: Path) -> None:
    variables = await run_page(page, dev_stack)
    if page.name != "README.md":
        return
    # The README's first job runs: its first run succeeds, seen through the Python client.
    job_id = variables["JOB"]
    assert job_id, "the README's first block sets JOB"

    async with Client(key=dev_stack.key) as client:

        async def succeeded() -> bool:
            job = await client.get(job_id)
            last = job.last_execution
            return last is not None and last.status == "succeeded"

        await eventually(succeeded, timeout_s=60, interval_s=0.5, what="the README's first job")
