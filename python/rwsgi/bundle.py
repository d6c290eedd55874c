"""``rwsgi bundle DIR``: a wheelhouse that installs rwsgi and an app's requirements offline.

The folder gets rwsgi's own wheel, every requirement's wheel for the running
interpreter and platform (downloaded by pip itself, never by our own
resolver), a ``requirements.txt`` pinning exactly what is there, and an
``INSTALL.txt`` with the commands to run on the target machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["BundleError", "find_rwsgi_wheel", "main", "write_bundle"]

_TAIL_LINES = 15
_MANYLINUX = ["--config-settings=maturin.build-args=--compatibility pypi"]


class BundleError(Exception):
    """A step of the bundle failed; the message says which and what to do."""


def _pip(args: list[str], what: str) -> None:
    """Run ``python -m pip ARGS``; on failure raise with pip's status and last lines."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.rstrip().splitlines()[-_TAIL_LINES:])
        raise BundleError(
            f"{what} failed: `{' '.join(command)}` exited with status {result.returncode};"
            f" pip's last lines:\n{tail}"
        )


def _installed_origin() -> tuple[str, Path | None, Path | None]:
    """The installed rwsgi's version, and the wheel file or source folder it came from."""
    dist = metadata.distribution("rwsgi")
    wheel: Path | None = None
    source: Path | None = None
    text = dist.read_text("direct_url.json")
    if text:
        try:
            info = json.loads(text)
        except ValueError:
            info = {}
        url = urlparse(str(info.get("url", "")))
        if url.scheme == "file":
            path = Path(unquote(url.path))
            if path.is_file() and path.suffix == ".whl":
                wheel = path
            elif "dir_info" in info and (path / "pyproject.toml").is_file():
                source = path
    return dist.version, wheel, source


def find_rwsgi_wheel(into: Path) -> Path:
    """Put a wheel of the installed rwsgi into ``into``; returns its path.

    The wheel it was installed from if that file still exists; else the
    index's (``pip download rwsgi==VERSION``); else one built with
    ``pip wheel`` from the checkout it was installed from.
    """
    version, wheel, source = _installed_origin()
    if wheel is not None:
        return Path(shutil.copy2(wheel, into))
    attempts = []
    with tempfile.TemporaryDirectory(prefix="rwsgi-bundle-") as scratch:
        steps = [
            (
                f"downloading rwsgi=={version} from the index",
                ["download", "--no-deps", "--only-binary=:all:", "-d", scratch],
                f"rwsgi=={version}",
            )
        ]
        if source is not None:
            steps.append(
                (
                    f"building rwsgi's wheel from {source}",
                    # maturin's PEP 517 hook tags linux_* unless told to check manylinux.
                    ["wheel", "--no-deps", "-w", scratch, *_MANYLINUX],
                    str(source),
                )
            )
        for what, args, target in steps:
            print(f"rwsgi bundle: {what}", file=sys.stderr)
            try:
                _pip([*args, target], what)
            except BundleError as error:
                attempts.append(str(error))
                continue
            built = sorted(Path(scratch).glob("rwsgi-*.whl"))
            if built:
                return Path(shutil.copy2(built[0], into))
            attempts.append(f"{what} gave no rwsgi wheel")
    tried = "\n\n".join(attempts)
    raise BundleError(
        f"no wheel of rwsgi {version} found: it was not installed from a wheel file"
        " that still exists, the index has none, and it was not installed from a source"
        " checkout. Build one in an rwsgi checkout (`pip wheel --no-deps -w dist .`)"
        f" and pass it with --wheel PATH.\n\n{tried}"
    )


def _wheel_pins(folder: Path) -> dict[str, str]:
    """``{normalized name: version}`` of every wheel in ``folder`` (from the file names)."""
    pins = {}
    for wheel in folder.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        pins[name.lower().replace("_", "-")] = version
    return pins


def _install_text(folder: Path, pins: dict[str, str], rwsgi_spec: str) -> str:
    """What INSTALL.txt says: the target, and the install and run commands."""
    python = f"CPython {sys.version_info.major}.{sys.version_info.minor}"
    target = f"{python} on {platform.system()} {platform.machine()}"
    name = folder.name
    listed = "\n".join(f"  {n}=={v}" for n, v in sorted(pins.items())) or "  (rwsgi only)"
    return (
        f"Offline install of {rwsgi_spec}, made for {target}.\n"
        "Some wheels may be specific to that Python version and platform: install on a\n"
        "machine that has the same.\n\n"
        f"Copy this folder to the target machine; from the folder that contains {name}/:\n\n"
        f"  python3 -m venv .venv && .venv/bin/pip install --no-index --find-links {name}"
        f" -r {name}/requirements.txt\n"
        "  .venv/bin/rwsgi mysite.wsgi:application --http 0.0.0.0:8000\n\n"
        "(or, for Django with rwsgi.django in INSTALLED_APPS:"
        " .venv/bin/python manage.py rwsgi_serve)\n\n"
        f"Wheels in this folder:\n{listed}\n"
    )


def write_bundle(
    folder: Path,
    requirements: list[str],
    requirement_files: list[Path],
    wheel: Path | None = None,
) -> Path:
    """Write the wheelhouse into ``folder`` (new or empty); returns its INSTALL.txt."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BundleError(f"{folder}: exists and is not an empty folder; give a new one")
    for file in requirement_files:
        if not file.is_file():
            raise BundleError(f"-r {file}: no such file")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _fill(folder, requirements, requirement_files, wheel)
    except BaseException:
        # Everything inside is ours (the folder was new or empty): a retry starts clean.
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for entry in folder.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        raise


def _fill(
    folder: Path, requirements: list[str], requirement_files: list[Path], wheel: Path | None
) -> Path:
    """The steps of ``write_bundle`` once ``folder`` exists and is empty."""
    if wheel is not None:
        if not wheel.is_file() or not wheel.name.startswith("rwsgi-") or wheel.suffix != ".whl":
            raise BundleError(f"--wheel {wheel}: not an rwsgi wheel file")
        own = Path(shutil.copy2(wheel, folder))
    else:
        own = find_rwsgi_wheel(folder)
    args = ["download", "--only-binary=:all:", "-d", str(folder), "--find-links", str(folder)]
    args.append(f"rwsgi @ {own.resolve().as_uri()}")
    args.extend(requirements)
    for file in requirement_files:
        args.extend(["-r", str(file)])
    print("rwsgi bundle: downloading the requirements' wheels with pip", file=sys.stderr)
    # Wheels only: an sdist would need a compiler on the target, which is what we avoid.
    _pip(
        args,
        "downloading the requirements' wheels (for a requirement pip finds no wheel of,"
        " pick a version that has one for this platform)",
    )
    pins = _wheel_pins(folder)
    rwsgi_version = pins.pop("rwsgi")
    extra = "[django]" if "django" in pins else ""
    rwsgi_spec = f"rwsgi{extra}=={rwsgi_version}"
    lines = [rwsgi_spec, *(f"{n}=={v}" for n, v in sorted(pins.items()))]
    (folder / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    install = folder / "INSTALL.txt"
    install.write_text(_install_text(folder, pins, rwsgi_spec), encoding="utf-8")
    return install


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``rwsgi bundle``."""
    parser = argparse.ArgumentParser(
        prog="rwsgi bundle",
        description="Write a folder of wheels that installs rwsgi and your requirements"
        " with no network (pip install --no-index --find-links DIR).",
    )
    parser.add_argument(
        "folder", metavar="DIR", type=Path, help="the folder to write (new or empty)"
    )
    parser.add_argument(
        "--with",
        dest="requirements",
        action="append",
        default=[],
        metavar="REQUIREMENT",
        help='a requirement to include, e.g. "django==5.2.*" (repeatable)',
    )
    parser.add_argument(
        "-r",
        "--requirement",
        dest="requirement_files",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="include every requirement of a requirements file (repeatable)",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        metavar="PATH",
        help="use this rwsgi wheel instead of finding the installed version's",
    )
    return parser


def main(argv: list[str]) -> int:
    """Run ``rwsgi bundle`` with the arguments after ``bundle``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        install = write_bundle(args.folder, args.requirements, args.requirement_files, args.wheel)
    except BundleError as error:
        print(f"rwsgi bundle: {error}", file=sys.stderr)
        return 1
    print(install.read_text(encoding="utf-8"), end="")
    return 0
