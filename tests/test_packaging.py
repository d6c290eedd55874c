"""The wheel as users get it, and ``rwsgi bundle`` installed with no network.

One wheel is built per session (``pip wheel . -w DIR``: the same
build the release workflow runs) and shared: its tag, the libraries its
extension needs and its contents are inspected; then a bundle made from it
installs into a fresh venv with ``--no-index`` and serves a request from
outside the checkout.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.process import LISTENING_RE, READY_RE

ROOT = Path(__file__).resolve().parent.parent

# The libraries a manylinux wheel may need from the system (PEP 599/600 policies).
MANYLINUX_LIBS = {
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libgcc_s.so.1",
    "libutil.so.1",
    "libstdc++.so.6",
    "libcrypt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rwsgi's wheel, built once from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    # The issue's own command: a plain PEP 517 build must give the manylinux wheel.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(out), "--no-deps", "-q"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (built,) = out.glob("rwsgi-*.whl")
    return built


def _wheel_metadata(wheel: Path, name: str) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [p for p in archive.namelist() if p.endswith(f".dist-info/{name}")]
        return email.message_from_bytes(archive.read(path))


def test_wheel_is_abi3_manylinux(wheel: Path) -> None:
    tags = _wheel_metadata(wheel, "WHEEL").get_all("Tag")
    assert tags, "no Tag in WHEEL"
    for tag in tags:
        assert re.fullmatch(r"cp310-abi3-manylinux_\d+_\d+_(x86_64|aarch64)", tag), tag
    assert re.fullmatch(r"rwsgi-[^-]+-cp310-abi3-manylinux_\d+_\d+_\w+\.whl", wheel.name)


def test_extension_needs_only_manylinux_libraries(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (so,) = [p for p in archive.namelist() if re.fullmatch(r"rwsgi/_rwsgi\.[^/]*so", p)]
        archive.extract(so, tmp_path)
    dynamic = subprocess.run(
        ["readelf", "-d", str(tmp_path / so)], capture_output=True, text=True, check=True
    ).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    assert needed, dynamic
    assert needed <= MANYLINUX_LIBS, f"outside the manylinux set: {needed - MANYLINUX_LIBS}"
    assert not any(lib.startswith("libpython") for lib in needed)


def test_auditwheel_agrees(wheel: Path) -> None:
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent))
    if auditwheel is None:
        pytest.skip("auditwheel is not installed (the readelf test covers the libraries)")
    report = subprocess.run(
        [auditwheel, "show", str(wheel)], capture_output=True, text=True, check=True
    ).stdout
    report = " ".join(report.split())  # auditwheel wraps its sentences
    assert re.search(r'consistent with the following platform tag: "manylinux_', report), report
    assert "external shared libraries are required" not in report, report


def test_wheel_contents_and_dependencies(wheel: Path) -> None:
    meta = _wheel_metadata(wheel, "METADATA")
    requires = meta.get_all("Requires-Dist") or []
    extras = {r: re.search(r"extra == ['\"](\w+)['\"]", r) for r in requires}
    # Only optional ones: Django for rwsgi[django], the test suite's tools for rwsgi[test].
    for requirement, extra in extras.items():
        assert extra and extra.group(1) in ("django", "test"), requirement
    django = [r for r, extra in extras.items() if extra and extra.group(1) == "django"]
    assert any(r.lower().startswith("django") for r in django), django
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for path in (
        "rwsgi/py.typed",
        "rwsgi/_rwsgi.pyi",
        "rwsgi/bundle.py",
        "rwsgi/django/__init__.py",
        "rwsgi/django/apps.py",
        "rwsgi/django/management/commands/rwsgi_serve.py",
    ):
        assert path in names, path


APP = """\
def application(environ, start_response):
    import rwsgi
    body = ("served by " + rwsgi.__file__).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


@pytest.fixture
def stopped(request: pytest.FixtureRequest) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes the test starts; each is stopped by PID at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.timeout(240)
def test_bundle_installs_offline_and_serves(
    wheel: Path, tmp_path: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    house = tmp_path / "wheelhouse"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "rwsgi",
            "bundle",
            str(house),
            "--with",
            "Django>=5.2,<5.3",
            "--wheel",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    install = (house / "INSTALL.txt").read_text(encoding="utf-8")
    assert "--no-index --find-links wheelhouse" in install
    assert wheel.name in os.listdir(house)
    assert any(name.lower().startswith("django-5.2") for name in os.listdir(house))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    installed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(house),
            "rwsgi[django]",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    django = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import django; print(django.__version__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert django.stdout.startswith("5.2")

    (tmp_path / "offline_app.py").write_text(APP, encoding="utf-8")
    process = subprocess.Popen(
        [
            str(venv / "bin" / "python"),
            "-m",
            "rwsgi",
            "offline_app:application",
            "--http",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
    )
    stopped.append(process)
    assert process.stderr is not None
    port = None
    log = []
    for raw in process.stderr:
        line = raw.decode(errors="replace")
        log.append(line)
        found = LISTENING_RE.search(line)
        if found:
            port = int(found.group(2))
        if port is not None and READY_RE.search(line):
            break
    assert port is not None, "".join(log)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
        body = response.read().decode()
    assert body.startswith("served by " + str(venv)), body
    assert str(ROOT) not in body
