#!/usr/bin/env bash
# The machine packages kjs needs beyond Python 3.11 and git, installed with apt-get when missing.
# One script for `make dev`, `make test`, `make install` and .ci/run.
#
#   infra/system-deps.sh [--check] venv|dev|test
#
#   venv  python3-venv, only when `python -m venv` cannot work (Debian's python without
#         ensurepip); checked with the interpreter in $KJS_PYTHON (default: python3.11, else
#         python3), the one the Makefile makes .venv with
#   dev   venv + java (openjdk-17-jre-headless), maven, postgres (the server binaries:
#         initdb/pg_ctl under /usr/lib/postgresql/*/bin, or initdb on PATH): what
#         `kjs dev` / `python -m infra up` run
#   test  dev + kcat (acceptance tests), promtool (Debian's prometheus: the rule tests) and
#         chromium (the console's browser tests: Playwright drives the system's browser)
#
# Nothing missing: prints nothing, exit 0 (fast: no apt, no network). Something missing: installs
# it with apt-get as root, or with `sudo -n` when sudo works without a password, running
# `apt-get update` once first; otherwise one line on stderr naming what is missing and the
# command that installs it, exit 1. --check only reports: one `<name> <debian-package>` line per
# missing thing on stdout, exit 1 if any, 0 if none.
#
# For tests: detection uses PATH (command -v), $JAVA_HOME/$MAVEN_HOME as infra/process.py does,
# and $KJS_PG_BIN_GLOB (default /usr/lib/postgresql/*/bin) for Postgres;
# KJS_SYSTEM_DEPS_NO_INSTALL=1 never installs (as if neither root nor sudo).
set -euo pipefail

usage() {
  echo "usage: $0 [--check] venv|dev|test" >&2
  exit 2
}

check_only=0
if [ "${1:-}" = --check ]; then
  check_only=1
  shift
fi
[ $# = 1 ] || usage
case $1 in
  venv) wanted=(venv) ;;
  dev) wanted=(java maven postgres venv) ;;
  test) wanted=(java maven postgres kcat promtool chromium venv) ;;
  *) usage ;;
esac

python=${KJS_PYTHON:-$(command -v python3.11 || command -v python3 || true)}
venv_package=python3-venv

has_tool() { # name, its *_HOME variable
  local home=${!2:-}
  { [ -n "$home" ] && [ -x "$home/bin/$1" ]; } || command -v "$1" >/dev/null
}

has_postgres() {
  compgen -G "${KJS_PG_BIN_GLOB:-/usr/lib/postgresql/*/bin}/initdb" >/dev/null ||
    command -v initdb >/dev/null
}

# `python -m venv` needs ensurepip, which Debian ships apart in python3.X-venv. Prints X.Y
# first so that the package named is the one for this interpreter, not the default python3's.
has_venv() {
  local version
  [ -n "$python" ] || return 0 # no interpreter to check: the Makefile reports that itself
  if version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2]); import ensurepip, venv' 2>/dev/null); then
    return 0
  fi
  [ -n "$version" ] && venv_package=python$version-venv
  return 1
}

present() {
  case $1 in
    java) has_tool java JAVA_HOME ;;
    maven) has_tool mvn MAVEN_HOME ;;
    postgres) has_postgres ;;
    kcat) command -v kcat >/dev/null ;;
    promtool) command -v promtool >/dev/null ;;
    chromium) command -v chromium >/dev/null ;;
    venv) has_venv ;;
  esac
}

package() {
  case $1 in
    java) echo openjdk-17-jre-headless ;;
    maven) echo maven ;;
    postgres) echo postgresql ;;
    kcat) echo kcat ;;
    promtool) echo prometheus ;; # with --no-install-recommends, as all: no node exporter
    chromium) echo chromium ;;
    venv) echo "$venv_package" ;;
  esac
}

# Sets `missing` (names) and `packages` (their Debian packages), in profile order.
detect() {
  local name
  missing=()
  packages=()
  for name in "${wanted[@]}"; do
    if ! present "$name"; then
      missing+=("$name")
      packages+=("$(package "$name")")
    fi
  done
}

listing() { # words... -> "a, b, c"
  local IFS=,
  local words="$*"
  echo "${words//,/, }"
}

detect
if [ "$check_only" = 1 ]; then
  for i in "${!missing[@]}"; do
    echo "${missing[$i]} ${packages[$i]}"
  done
  exit $((${#missing[@]} > 0))
fi
if [ ${#missing[@]} = 0 ]; then
  exit 0
fi

# How to become root for apt-get: already root, `sudo -n` (no password prompt), or no way.
uid=$(id -u 2>/dev/null || echo unknown)
can_install=0
as_root=()
if [ "${KJS_SYSTEM_DEPS_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
  if [ "$uid" = 0 ]; then
    can_install=1
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    can_install=1
    as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  fi
fi

if [ "$can_install" = 0 ]; then
  sudo=sudo
  [ "$uid" = 0 ] && sudo=""
  them=them
  [ ${#missing[@]} = 1 ] && them=it
  echo "kjs: missing $(listing "${missing[@]}"); install $them with:" \
    "${sudo:+$sudo }apt-get update && ${sudo:+$sudo }apt-get install -y --no-install-recommends ${packages[*]}" >&2
  exit 1
fi

echo "kjs: installing ${packages[*]} (for $(listing "${missing[@]}")) with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# Quiet: apt's own output is shown only when it fails. One `update`, only now that something
# must be installed (a fresh machine may have no package lists at all).
if ! out=$("${as_root[@]}" apt-get update -qq 2>&1 </dev/null &&
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" 2>&1 </dev/null); then
  printf '%s\n' "$out" >&2
  echo "kjs: apt-get could not install ${packages[*]}" >&2
  exit 1
fi

hash -r
detect
if [ ${#missing[@]} != 0 ]; then
  echo "kjs: installed, but still missing $(listing "${missing[@]}") (not on PATH?)" >&2
  exit 1
fi
