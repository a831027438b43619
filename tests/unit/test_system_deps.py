"""infra/system-deps.sh: what `make dev`, `make test` and .ci/run install on a bare machine.

The script runs for real, on a fake machine: PATH is a temp dir of fake executables (java, mvn,
kcat, promtool, chromium, python3.11, id, and apt-get/sudo that only record their calls),
Postgres is looked for under a temp glob (``KJS_PG_BIN_GLOB``). Nothing is installed on the real
machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "system-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"

# name the script reports -> (executable, Debian package)
TOOLS = {
    "java": ("java", "openjdk-17-jre-headless"),
    "maven": ("mvn", "maven"),
    "kcat": ("kcat", "kcat"),
    "promtool": ("promtool", "prometheus"),
    "chromium": ("chromium", "chromium"),
}
EVERYTHING = ["java", "maven", "postgres", "kcat", "promtool", "chromium", "venv"]

# Records its calls and "installs" what each package would: the tools into the fake PATH,
# initdb under the fake Postgres glob, ensurepip (a flag file the fake python looks at).
FAKE_APT_GET = """#!{python}
import os, sys
from pathlib import Path
machine = Path({machine!r})
with open(machine / "apt.log", "a") as log:
    log.write(os.environ.get("DEBIAN_FRONTEND", "-") + " " + " ".join(sys.argv[1:]) + "\\n")
if (machine / "apt-fails").exists():
    print("E: Unable to locate package kcat")
    sys.exit(100)
if "install" in sys.argv and not (machine / "apt-installs-nothing").exists():
    tools = {tools!r}
    for package in sys.argv[sys.argv.index("install") + 1:]:
        if package in tools:
            exe = machine / "bin" / tools[package]
            exe.write_text("#!/bin/sh\\nexit 0\\n")
            exe.chmod(0o755)
        elif package == "postgresql":
            (machine / "pg" / "15" / "bin").mkdir(parents=True)
            (machine / "pg" / "15" / "bin" / "initdb").write_text("")
        elif package.endswith("-venv"):
            (machine / "ensurepip").write_text("")
"""

# `sudo -n CMD...` runs CMD (after an optional `env VAR=value...`); without -n, or when
# the machine's sudo wants a password, it fails as the real one does.
FAKE_SUDO = """#!{python}
import os, sys
from pathlib import Path
machine = Path({machine!r})
with open(machine / "sudo.log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if not args or args[0] != "-n" or (machine / "sudo-wants-password").exists():
    sys.exit(1)
args = args[1:]
if args == ["true"]:
    sys.exit(0)
if args[0] == "env":
    args = args[1:]
    while "=" in args[0]:
        key, value = args.pop(0).split("=", 1)
        os.environ[key] = value
os.execvp(args[0], args)
"""


class Machine:
    """A fake machine in a temp dir; starts with everything present, run as a non-root user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        for name in TOOLS:
            self.add(name)
        self.add("postgres")
        self.add("venv")
        self.python_version = "3.11"
        self.uid = 1000

    def _exe(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(body)
        path.chmod(0o755)

    def add(self, name: str) -> None:
        if name in TOOLS:
            self._exe(TOOLS[name][0], "#!/bin/sh\nexit 0\n")
        elif name == "postgres":
            (self.root / "pg" / "16" / "bin").mkdir(parents=True)
            (self.root / "pg" / "16" / "bin" / "initdb").write_text("")
        elif name == "venv":
            (self.root / "ensurepip").write_text("")
        else:
            raise AssertionError(name)

    def remove(self, *names: str) -> None:
        for name in names:
            if name in TOOLS:
                (self.bin / TOOLS[name][0]).unlink()
            elif name == "postgres":
                shutil.rmtree(self.root / "pg")
            elif name == "venv":
                (self.root / "ensurepip").unlink()
            else:
                raise AssertionError(name)

    def with_apt_get(self) -> None:
        tools = {package: exe for exe, package in TOOLS.values()}
        fake = FAKE_APT_GET.format(python=sys.executable, machine=str(self.root), tools=tools)
        self._exe("apt-get", fake)

    def with_sudo(self) -> None:
        self._exe("sudo", FAKE_SUDO.format(python=sys.executable, machine=str(self.root)))

    def log(self, name: str) -> list[str]:
        path = self.root / f"{name}.log"
        return path.read_text().splitlines() if path.exists() else []

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        # The interpreter the venv is made with, found on PATH as the Makefile does: it prints
        # its version, then fails as Debian's python does without python3.X-venv.
        ensurepip = self.root / "ensurepip"
        self._exe("python3.11", f"#!/bin/sh\necho {self.python_version}\ntest -e '{ensurepip}'\n")
        self._exe("id", f"#!/bin/sh\necho {self.uid}\n")
        return subprocess.run(
            [BASH, str(SCRIPT), *args],
            env={"PATH": str(self.bin), "KJS_PG_BIN_GLOB": str(self.root / "pg" / "*" / "bin")}
            | env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def missing_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def test_everything_present_is_a_silent_no_op(machine: Machine) -> None:
    machine.uid = 0
    machine.with_apt_get()
    for args in (["--check", "test"], ["test"], ["dev"], ["venv"]):
        result = machine.run(*args)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), args
    assert machine.log("apt") == []  # not even `apt-get update`


def test_check_names_exactly_what_is_missing(machine: Machine) -> None:
    machine.remove("java", "kcat")
    result = machine.run("--check", "test")
    assert result.returncode == 1
    assert missing_lines(result) == ["java openjdk-17-jre-headless", "kcat kcat"]
    assert result.stderr == ""


def test_check_names_every_missing_thing_with_its_debian_package(machine: Machine) -> None:
    machine.remove(*EVERYTHING)
    machine.python_version = "3.12"
    result = machine.run("--check", "test")
    assert result.returncode == 1
    assert missing_lines(result) == [
        "java openjdk-17-jre-headless",
        "maven maven",
        "postgres postgresql",
        "kcat kcat",
        "promtool prometheus",
        "chromium chromium",
        "venv python3.12-venv",  # the package of the interpreter that makes the venv
    ]


def test_dev_does_not_need_kcat_promtool_or_chromium(machine: Machine) -> None:
    machine.remove("kcat", "promtool", "chromium")
    assert machine.run("--check", "dev").returncode == 0
    assert machine.run("dev", KJS_SYSTEM_DEPS_NO_INSTALL="1").returncode == 0
    result = machine.run("--check", "test")
    assert missing_lines(result) == ["kcat kcat", "promtool prometheus", "chromium chromium"]


def test_the_console_browser_tests_need_chromium(machine: Machine) -> None:
    machine.remove("chromium")
    result = machine.run("--check", "test")
    assert result.returncode == 1
    assert missing_lines(result) == ["chromium chromium"]


def test_dev_needs_java_maven_postgres_and_venv(machine: Machine) -> None:
    machine.remove("java", "maven", "postgres", "venv", "kcat")
    result = machine.run("--check", "dev")
    assert result.returncode == 1
    assert [line.split()[0] for line in missing_lines(result)] == [
        "java",
        "maven",
        "postgres",
        "venv",
    ]


def test_venv_profile_checks_only_the_venv(machine: Machine) -> None:
    machine.remove("java", "postgres")
    assert machine.run("--check", "venv").returncode == 0
    machine.remove("venv")
    assert missing_lines(machine.run("--check", "venv")) == ["venv python3.11-venv"]


def test_python_from_kjs_python_is_the_one_checked(machine: Machine) -> None:
    broken = machine.root / "other-python"
    broken.write_text("#!/bin/sh\necho 3.13\nexit 1\n")
    broken.chmod(0o755)
    result = machine.run("--check", "venv", KJS_PYTHON=str(broken))
    assert missing_lines(result) == ["venv python3.13-venv"]


def test_java_home_and_maven_home_count_as_installed(machine: Machine) -> None:
    machine.remove("java", "maven")
    for home, exe in (("jdk", "java"), ("maven", "mvn")):
        (machine.root / home / "bin").mkdir(parents=True)
        (machine.root / home / "bin" / exe).write_text("#!/bin/sh\n")
        (machine.root / home / "bin" / exe).chmod(0o755)
    homes = {"JAVA_HOME": str(machine.root / "jdk"), "MAVEN_HOME": str(machine.root / "maven")}
    assert machine.run("--check", "test", **homes).returncode == 0
    assert missing_lines(machine.run("--check", "test")) == [
        "java openjdk-17-jre-headless",
        "maven maven",
    ]


def test_initdb_on_path_counts_as_postgres(machine: Machine) -> None:
    machine.remove("postgres")
    assert missing_lines(machine.run("--check", "dev")) == ["postgres postgresql"]
    (machine.bin / "initdb").write_text("#!/bin/sh\n")
    (machine.bin / "initdb").chmod(0o755)
    assert machine.run("--check", "dev").returncode == 0


def test_no_install_mode_stops_with_one_line(machine: Machine) -> None:
    machine.remove("java", "kcat")
    machine.with_apt_get()
    machine.with_sudo()
    result = machine.run("test", KJS_SYSTEM_DEPS_NO_INSTALL="1")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "kjs: missing java, kcat; install them with: sudo apt-get update && "
        "sudo apt-get install -y --no-install-recommends openjdk-17-jre-headless kcat"
    ]
    assert machine.log("apt") == []
    assert machine.log("sudo") == []


def test_no_install_mode_as_root_names_the_command_without_sudo(machine: Machine) -> None:
    machine.uid = 0
    machine.remove("promtool")
    machine.with_apt_get()
    result = machine.run("test", KJS_SYSTEM_DEPS_NO_INSTALL="1")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "kjs: missing promtool; install it with: apt-get update && "
        "apt-get install -y --no-install-recommends prometheus"
    ]
    assert machine.log("apt") == []


def test_without_root_or_sudo_it_stops_with_one_line(machine: Machine) -> None:
    machine.remove(*EVERYTHING)
    machine.with_apt_get()  # there, but not usable: not root and no sudo
    result = machine.run("test")
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "kjs: missing java, maven, postgres, kcat, promtool, chromium, venv; "
    )
    assert lines[0].endswith(
        "sudo apt-get install -y --no-install-recommends openjdk-17-jre-headless maven "
        "postgresql kcat prometheus chromium python3.11-venv"
    )
    assert machine.log("apt") == []


def test_sudo_wanting_a_password_is_not_used(machine: Machine) -> None:
    machine.remove("kcat")
    machine.with_apt_get()
    machine.with_sudo()
    (machine.root / "sudo-wants-password").write_text("")
    result = machine.run("test")
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1
    assert "sudo apt-get install -y --no-install-recommends kcat" in result.stderr
    assert machine.log("sudo") == ["-n true"]  # asked, never prompted
    assert machine.log("apt") == []


def test_as_root_it_installs_with_one_update(machine: Machine) -> None:
    machine.uid = 0
    machine.remove("java", "postgres", "venv")
    machine.with_apt_get()
    result = machine.run("dev")
    assert result.returncode == 0, result.stderr
    assert machine.log("apt") == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends "
        "openjdk-17-jre-headless postgresql python3.11-venv",
    ]
    assert machine.run("--check", "dev").returncode == 0
    # Now a no-op: no second update.
    assert machine.run("dev").returncode == 0
    assert len(machine.log("apt")) == 2


def test_with_passwordless_sudo_it_installs_through_sudo(machine: Machine) -> None:
    machine.remove("kcat", "promtool", "chromium")
    machine.with_apt_get()
    machine.with_sudo()
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert machine.log("sudo") == [
        "-n true",
        "-n env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "-n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        "kcat prometheus chromium",
    ]
    assert machine.log("apt") == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends kcat prometheus chromium",
    ]
    assert machine.run("--check", "test").returncode == 0


def test_a_failing_apt_get_shows_its_output(machine: Machine) -> None:
    machine.uid = 0
    machine.remove("kcat")
    machine.with_apt_get()
    (machine.root / "apt-fails").write_text("")
    result = machine.run("test")
    assert result.returncode != 0
    assert "E: Unable to locate package kcat" in result.stderr
    assert result.stderr.splitlines()[-1] == "kjs: apt-get could not install kcat"
    assert machine.log("apt") == ["noninteractive update -qq"]  # stopped there


def test_still_missing_after_installing_fails(machine: Machine) -> None:
    machine.uid = 0
    machine.remove("java")
    machine.with_apt_get()
    (machine.root / "apt-installs-nothing").write_text("")
    result = machine.run("dev")
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith("kjs: installed, but still missing java ")


@pytest.mark.parametrize("args", [[], ["prod"], ["--check"], ["dev", "test"]])
def test_bad_usage(machine: Machine, args: list[str]) -> None:
    result = machine.run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage:")
