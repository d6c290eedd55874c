"""Three hosts behind nginx, each in its own network namespace: what a rolling
reload, a rolling restart and a SIGKILL cost the clients.

    sudo python benches/fleet.py [--scenarios roll-reload,roll-restart,kill]
                                 [--server rwsgi] [--rate 750] [--output FILE [--append]]

The run creates the namespaces ``rwsgi-fleet-lb`` and ``rwsgi-fleet-h1..3``
(a veth pair from the LB namespace to each host, 10.213.N.1 <-> 10.213.N.2),
runs one server per host namespace (``fleet_app.py``: 20 ms per request, a
POST reads its small body first; 2 workers x 4 threads on 0.0.0.0:8000) and
nginx in the LB namespace (``max_fails=1 fail_timeout=2s``,
``proxy_next_upstream error timeout``), and drives a mixed GET/POST load from
the LB namespace at nginx's 127.0.0.1:8080 with ``reload.py``'s generator. All
traffic stays inside the namespaces. Scenarios, each with a fresh nginx and
all three hosts up:

- roll-reload: a source change on each host and SIGHUP to its master, the
  three back to back (no pause);
- roll-restart: per host, SIGTERM to its master, and as soon as it has exited
  a new server started on the same address (not waiting for it to be ready),
  then the next host at once; rwsgi gets ``--health-path /-/ready
  --health-drain-delay 2``;
- kill: SIGKILL to one host's master and workers (its process group).

Everything it made is removed in a ``finally`` (also on Ctrl-C or SIGTERM):
processes by PID and process group, the namespaces (which takes the veths
with them), the temp dir. It must run as root: creating network namespaces
and veths needs CAP_NET_ADMIN. README.md explains the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import reload
from reload import UNKNOWN_FLAG, LoadSpec, log

BENCHES = Path(__file__).resolve().parent
NGINX = Path("/usr/sbin/nginx")
LB = "rwsgi-fleet-lb"
HOSTS = ("h1", "h2", "h3")
PORT = 8000
LB_PORT = 8080
WORKERS = 2
THREADS = 4
ANSWER = r"fleet (?P<host>h\d) v(?P<version>\d+) pid (?P<pid>\d+)(?: read (?P<read>\d+))?\n"
HEALTH_FLAGS = ["--health-path", "/-/ready", "--health-drain-delay", "2"]
SCENARIOS = ("roll-reload", "roll-restart", "kill")


def ns(host: str) -> str:
    return f"rwsgi-fleet-{host}"


def address(host: str) -> str:
    return f"10.213.{HOSTS.index(host) + 1}.2"


NGINX_CONF = """\
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    log_format fleet '$msec $request_method $status "$upstream_addr" '
                     '"$upstream_status" "$upstream_connect_time"';
    access_log {tmp}/access.log fleet buffer=64k flush=1s;
    keepalive_timeout 65;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream fleet {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fleet;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_conf(tmp: Path) -> str:
    servers = "\n".join(
        f"        server {address(h)}:{PORT} max_fails=1 fail_timeout=2s;" for h in HOSTS
    )
    return NGINX_CONF.format(tmp=tmp, servers=servers, port=LB_PORT)


# --------------------------------------------------------------------------
# The hosts' servers
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HostServer:
    name: str
    command: Callable[[Path, bool], list[str]]  # (venv, with the health flags)
    ready: str
    binary: str


def _rwsgi(venv: Path, health: bool) -> list[str]:
    return [
        str(venv / "bin" / "python"), "-m", "rwsgi", "fleet_app:app", "--http", f"0.0.0.0:{PORT}",
        "--workers", str(WORKERS), "--threads", str(THREADS), *(HEALTH_FLAGS if health else []),
    ]  # fmt: skip


def _gunicorn(venv: Path, health: bool) -> list[str]:
    return [
        str(venv / "bin" / "gunicorn"), "--bind", f"0.0.0.0:{PORT}", "--workers", str(WORKERS),
        "--worker-class", "gthread", "--threads", str(THREADS), "--backlog", "1024",
        "fleet_app:app",
    ]  # fmt: skip


def _granian(venv: Path, health: bool) -> list[str]:
    return [
        str(venv / "bin" / "granian"), "--interface", "wsgi", "--host", "0.0.0.0",
        "--port", str(PORT), "--workers", str(WORKERS), "--blocking-threads", str(THREADS),
        "--http", "1", "--no-ws", "fleet_app:app",
    ]  # fmt: skip


def _uwsgi(venv: Path, health: bool) -> list[str]:
    return [
        str(venv / "bin" / "uwsgi"), "--http-socket", f"0.0.0.0:{PORT}", "--master",
        "--processes", str(WORKERS), "--threads", str(THREADS), "--module", "fleet_app:app",
        "--listen", "1024", "--disable-logging", "--die-on-term", "--need-app", "--strict",
    ]  # fmt: skip


HOST_SERVERS = {
    s.name: s
    for s in (
        HostServer("rwsgi", _rwsgi, r"worker \d+ \(pid \d+\) ready", "python"),
        HostServer("gunicorn", _gunicorn, r"Booting worker with pid", "gunicorn"),
        HostServer("granian", _granian, r"Started worker-\d+", "granian"),
        HostServer("uwsgi", _uwsgi, r"spawned uWSGI worker \d+", "uwsgi"),
    )
}


class FleetFailed(Exception):
    pass


# --------------------------------------------------------------------------
# The fleet: namespaces, processes, and their removal
# --------------------------------------------------------------------------


class Fleet:
    """Owns everything the run makes; ``close()`` removes all of it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server = HOST_SERVERS[args.server]
        self.tmp = Path(tempfile.mkdtemp(prefix="rwsgi-fleet-"))
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []  # every process started, for close()
        self.hosts: dict[str, subprocess.Popen | None] = dict.fromkeys(HOSTS)
        self.host_logs: dict[str, Path] = {}
        self.versions: dict[str, int] = dict.fromkeys(HOSTS, 1)
        self.starts = 0
        self.nginx: subprocess.Popen | None = None
        self.health = False
        # Whether each host was started with the health flags.
        self.started_with: dict[str, bool] = {}
        for host in HOSTS:  # this run's logs only
            (args.logs / f"fleet-{self.server.name}-{host}.log").unlink(missing_ok=True)

    # -- namespaces --------------------------------------------------------

    def ip(self, *words: str) -> None:
        done = subprocess.run(["ip", *words], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise FleetFailed(f"ip {' '.join(words)}: {done.stderr.strip()}")

    def create_namespaces(self) -> None:
        existing = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        for name in [LB, *map(ns, HOSTS)]:
            if re.search(rf"^{re.escape(name)}\b", existing, re.M):
                # Only this harness makes namespaces of that name: one a run
                # killed with SIGKILL left behind.
                log(f"removing the namespace {name} an earlier run left")
                subprocess.run(["ip", "netns", "del", name], timeout=30, check=False)
            self.ip("netns", "add", name)
            self.namespaces.append(name)
            self.ip("-n", name, "link", "set", "lo", "up")
        for number, host in enumerate(HOSTS, 1):
            # Made in the LB namespace, its peer put straight into the host's:
            # nothing is ever in the machine's own namespace.
            self.ip("-n", LB, "link", "add", host, "type", "veth", "peer", "name", "eth0",
                    "netns", ns(host))  # fmt: skip
            self.ip("-n", LB, "addr", "add", f"10.213.{number}.1/24", "dev", host)
            self.ip("-n", LB, "link", "set", host, "up")
            self.ip("-n", ns(host), "addr", "add", f"10.213.{number}.2/24", "dev", "eth0")
            self.ip("-n", ns(host), "link", "set", "eth0", "up")

    # -- processes ---------------------------------------------------------

    def spawn(self, namespace: str, command: list[str], out: Path, **kw) -> subprocess.Popen:
        """``command`` in ``namespace``, in a new session. ``ip netns exec``
        execs it, so the PID is the command's own."""
        with open(out, "ab") as stream:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *command], stdout=kw.pop("stdout", stream),
                stderr=stream, start_new_session=True, **kw,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def start_host(self, host: str) -> subprocess.Popen:
        appdir = self.tmp / host
        if not appdir.exists():
            appdir.mkdir()
            shutil.copy(BENCHES / "fleet_app.py", appdir / "fleet_app.py")
        logfile = self.args.logs / f"fleet-{self.server.name}-{host}.log"
        self.host_logs[host] = logfile
        self.started_with[host] = self.health
        env = dict(
            os.environ, FLEET_HOST=host, PYTHONPATH=str(appdir), PYTHONUNBUFFERED="1",
            PYTHONDONTWRITEBYTECODE="1",
        )  # fmt: skip
        with open(logfile, "ab") as stream:
            stream.write(f"--- start {self.starts} ---\n".encode())
        self.starts += 1
        proc = self.spawn(
            ns(host), self.server.command(self.args.venv, self.health), logfile,
            cwd=appdir, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.hosts[host] = proc
        return proc

    def wait_ready(self, host: str) -> None:
        proc, logfile = self.hosts[host], self.host_logs[host]
        assert proc is not None
        deadline = time.monotonic() + self.args.start_timeout
        while time.monotonic() < deadline:
            text = logfile.read_text(errors="replace").rsplit("--- start ", 1)[-1]
            if proc.poll() is not None:
                unknown = UNKNOWN_FLAG.search(text)
                if unknown:
                    raise FleetFailed(
                        f"{host}: this {self.server.name} rejects "
                        f"{unknown.group(1) or unknown.group(2)}"
                    )
                raise FleetFailed(f"{host} exited ({proc.returncode}): {text[-300:]}")
            if len(re.findall(self.server.ready, text)) >= WORKERS:
                return
            time.sleep(0.1)
        raise FleetFailed(f"{host} not ready after {self.args.start_timeout:.0f} s")

    def ensure_hosts(self) -> None:
        """Every host running, with this scenario's flags (a host started by
        an earlier scenario without the health flags is started again)."""
        for host in HOSTS:
            proc = self.hosts[host]
            if proc is not None and proc.poll() is None and self.started_with[host] != self.health:
                stop_proc(proc, signal.SIGTERM, 10)
            if proc is None or proc.poll() is not None:
                self.start_host(host)
        for host in HOSTS:
            self.wait_ready(host)

    def start_nginx(self) -> None:
        conf_dir = self.tmp / "nginx"
        if conf_dir.exists():
            shutil.rmtree(conf_dir)
        conf_dir.mkdir()
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (conf_dir / sub).mkdir()
        (conf_dir / "nginx.conf").write_text(nginx_conf(conf_dir))
        self.nginx = self.spawn(
            LB, [str(NGINX), "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"),
                 "-e", str(conf_dir / "error.log"), "-g", "daemon off;"],
            conf_dir / "nginx.out", stdin=subprocess.DEVNULL,
        )  # fmt: skip
        # Ready once every host has answered through it.
        deadline = time.monotonic() + self.args.start_timeout
        seen: set[str] = set()
        while time.monotonic() < deadline and seen != set(HOSTS):
            if self.nginx.poll() is not None:
                raise FleetFailed(f"nginx exited: {(conf_dir / 'error.log').read_text()[-300:]}")
            seen |= set(self.probe())
            time.sleep(0.1)
        if seen != set(HOSTS):
            raise FleetFailed(f"through nginx only {sorted(seen)} answered")

    def probe(self, count: int = 6) -> list[str]:
        """``count`` GETs through nginx from the LB namespace: the hosts that answered."""
        code = (
            "import http.client\n"
            f"for _ in range({count}):\n"
            "    try:\n"
            f"        c = http.client.HTTPConnection('127.0.0.1', {LB_PORT}, timeout=2)\n"
            "        c.request('GET', '/'); r = c.getresponse()\n"
            "        print(r.status, r.read().decode())\n"
            "    except OSError as e: print('error', e)\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", LB, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return re.findall(r"^200 fleet (h\d) ", done.stdout, re.M)

    def stop_nginx(self) -> None:
        if self.nginx is not None:
            stop_proc(self.nginx, signal.SIGQUIT, 5)
            self.nginx = None

    def close(self) -> None:
        """Every process we started (by PID, then its process group), then the
        namespaces, then the temp dir; each step goes on if one fails."""
        for proc in reversed(self.procs):
            try:
                stop_proc(proc, signal.SIGTERM, 5)
            except Exception as error:  # cleanup must go on
                log(f"stopping pid {proc.pid}: {error}")
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], timeout=30, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def stop_proc(proc: subprocess.Popen, sig: int, grace: float) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what it left behind, in its session
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5)


# --------------------------------------------------------------------------
# The load and the scenarios
# --------------------------------------------------------------------------


class Generator:
    """reload.py's ``Load`` run in the LB namespace; ``finish()`` its records."""

    def __init__(self, fleet: Fleet, spec: LoadSpec) -> None:
        self.proc = fleet.spawn(
            LB, [sys.executable, str(BENCHES / "reload.py"), "--generate",
                 json.dumps(dataclasses.asdict(spec))],
            fleet.tmp / "generator.err", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"generating":
            raise FleetFailed(f"the load generator did not start: {fleet.tmp / 'generator.err'}")

    def finish(self, timeout: float) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read()  # bounded: the generator's clients time out
        self.proc.wait(timeout)
        return json.loads(out)


def roll_reload(fleet: Fleet) -> list[dict]:
    events = []
    for host in HOSTS:
        proc = fleet.hosts[host]
        assert proc is not None
        fleet.versions[host] += 1
        reload.write_version(fleet.tmp / host / "fleet_app.py", fleet.versions[host])
        events.append({"host": host, "what": "SIGHUP", "at": time.monotonic(),
                       "version": fleet.versions[host]})  # fmt: skip
        os.kill(proc.pid, signal.SIGHUP)
    return events


def roll_restart(fleet: Fleet) -> list[dict]:
    events = []
    grace = fleet.args.exit_timeout
    for host in HOSTS:
        proc = fleet.hosts[host]
        assert proc is not None
        events.append({"host": host, "what": "SIGTERM", "at": time.monotonic()})
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            events.append({"host": host, "what": f"still running {grace:.0f} s after SIGTERM; "
                           "SIGKILL", "at": time.monotonic()})  # fmt: skip
            stop_proc(proc, signal.SIGKILL, 5)
        events.append({"host": host, "what": "exited", "at": time.monotonic()})
        fleet.start_host(host)
        events.append({"host": host, "what": "started", "at": time.monotonic()})
    return events


def kill_one(fleet: Fleet) -> list[dict]:
    host = HOSTS[-1]
    proc = fleet.hosts[host]
    assert proc is not None
    at = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)  # the master and its workers: its session
    proc.wait(5)
    return [{"host": host, "what": "SIGKILL (master and workers)", "at": at}]


ACTIONS = {"roll-reload": roll_reload, "roll-restart": roll_restart, "kill": kill_one}


def access_log(path: Path) -> list[dict]:
    """nginx's access log: one dict per request, its upstream attempts split."""
    entries = []
    line_re = re.compile(r'(\S+) (\S+) (\d+) "([^"]*)" "([^"]*)" "([^"]*)"')
    for line in path.read_text(errors="replace").splitlines():
        match = line_re.match(line)
        if not match:
            continue
        msec, method, status, addrs, statuses, connects = match.groups()
        entries.append({
            "t": float(msec), "method": method, "status": int(status),
            "attempts": list(zip(
                [a.strip() for a in addrs.split(",")],
                [s.strip() for s in statuses.split(",")],
                [c.strip() for c in connects.split(",")], strict=False,
            )),
        })  # fmt: skip
    return entries


def run_scenario(fleet: Fleet, name: str) -> dict:
    args = fleet.args
    fleet.health = name == "roll-restart" and fleet.server.name == "rwsgi" and args.health_flags
    result: dict = {"scenario": name, "health_flags": fleet.health}
    fleet.ensure_hosts()
    fleet.start_nginx()
    spec = LoadSpec(
        "127.0.0.1", LB_PORT, answer=ANSWER, clients=args.clients, rate=args.rate,
        timeout=args.timeout, post_share=args.post_share, post_bytes=args.post_bytes,
    )  # fmt: skip
    wall0, mono0 = time.time(), time.monotonic()
    generator = Generator(fleet, spec)
    try:
        time.sleep(args.settle)
        events = ACTIONS[name](fleet)
        done_at = time.monotonic()
        time.sleep(args.after)
    finally:
        data = generator.finish(args.timeout + 10)
    records = data["records"]
    fleet.stop_nginx()  # flushes its access log
    entries = access_log(fleet.tmp / "nginx" / "access.log")
    for entry in entries:  # nginx's wall clock onto the monotonic one
        entry["t"] = entry["t"] - wall0 + mono0
    start = data["started"]
    failed = [r for r in records if r[1] != "ok"]
    by_kind = Counter(r[1] if r[1] != "status" else f"status {r[4]}" for r in failed)
    result.update(
        requests=len(records),
        posts=sum(1 for r in records if r[3] == "POST"),
        failed=len(failed),
        by_kind=dict(by_kind),
        failed_posts=sum(1 for r in failed if r[3] == "POST"),
        failed_gets=sum(1 for r in failed if r[3] == "GET"),
        failure_times=[round(r[0] - start, 2) for r in failed][:40],
        throughput=reload.throughput(records, start, data["stopped"]),
        events=[{**e, "at": round(e["at"] - start, 2)} for e in events],
        action_s=round(done_at - events[0]["at"], 2),
        nginx_retried=sum(1 for e in entries if len(e["attempts"]) > 1),
        nginx_statuses=dict(Counter(str(e["status"]) for e in entries)),
    )
    if name == "roll-reload":
        result["new_version_after"] = {e["host"]: _first_version(records, e) for e in events}
    if name == "kill":
        killed = f"{address(events[0]['host'])}:{PORT}"
        at = events[0]["at"]
        # In flight on the killed host: attempts there that had connected (a
        # connect time) and got no answer, around the kill.
        inflight = [
            e
            for e in entries
            if any(a == killed and s in ("502", "504") and c != "-" for a, s, c in e["attempts"])
            and abs(e["t"] - at) < 1.0 + args.timeout
        ]
        result["inflight"] = {
            "POST": sum(1 for e in inflight if e["method"] == "POST"),
            "GET": sum(1 for e in inflight if e["method"] == "GET"),
            "lost": sum(1 for e in inflight if e["status"] >= 500),
            "refused_attempts": sum(
                1 for e in entries for a, s, c in e["attempts"] if a == killed and c == "-"
            ),
        }
    return result


def _first_version(records: list[list], event: dict) -> float | None:
    for r in records:
        if (r[0] >= event["at"] and r[1] == "ok" and r[4]["host"] == event["host"]
                and int(r[4]["version"]) >= event["version"]):  # fmt: skip
            return round(r[0] - event["at"], 2)
    return None


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def render(data: dict) -> str:
    a = data["args"]
    lines = [
        "## Three hosts behind nginx, in network namespaces (benches/fleet.py)",
        "",
        f"- date: {data['date']}; nproc {os.cpu_count()}; {data['versions']}; "
        f"nginx {data['nginx']}",
        f"- server on each host: {a['server']}, {WORKERS} workers x {THREADS} threads, "
        f"`fleet_app:app` (20 ms; a POST reads its {a['post_bytes']}-byte body first); nginx: "
        "`max_fails=1 fail_timeout=2s`, `proxy_next_upstream error timeout` (nginx's default of "
        "not passing a POST on to the next host once it was sent is kept), no upstream keep-alive",
        f"- load: {a['clients']} clients from the LB namespace to nginx (half keep-alive), "
        "paced to "
        f"{a['rate']:.0f} req/s in all, {a['post_share']:.0%} POSTs, {a['timeout']:.0f} s timeout; "
        f"{a['settle']:.0f} s of load before the action and {a['after']:.0f} s after it",
        "",
        "| scenario | requests | failed | failed by kind | failed GET / POST | req/s median | "
        "worst second | worst / median | nginx retried | action took |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in data["runs"]:
        if "failed_run" in run:
            lines.append(f"| {run['scenario']} | failed: {run['failed_run'][:200]} |")
            continue
        t = run["throughput"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(run["by_kind"].items())) or "-"
        label = run["scenario"] + (" (with the health flags)" if run["health_flags"] else "")
        lines.append(
            f"| {label} | {run['requests']:,} | {run['failed']:,} | {kinds} | "
            f"{run['failed_gets']} / {run['failed_posts']} | {t['median']:.0f} | {t['worst']} | "
            f"{t['dip']:.2f} | {run['nginx_retried']} | {run['action_s']:.2f} s |"
        )
    lines += ["", "Notes:", ""]
    for run in data["runs"]:
        if "failed_run" in run:
            continue
        name = run["scenario"]
        events = "; ".join(f"{e['at']:.2f} s {e['host']} {e['what']}" for e in run["events"])
        lines.append(f"- {name}: {events}")
        if run["failure_times"]:
            lines.append(
                f"- {name}: failures at (s into the load): "
                + ", ".join(str(x) for x in run["failure_times"][:15])
                + (" ..." if run["failed"] > 15 else "")
            )
        if "new_version_after" in run:
            seen = ", ".join(
                f"{h} {'never' if v is None else f'{v:.2f} s'}"
                for h, v in run["new_version_after"].items()
            )
            lines.append(f"- {name}: each host's new code first answered after its SIGHUP: {seen}")
        if "inflight" in run:
            i = run["inflight"]
            verdict = "met" if run["failed"] == i["POST"] and run["failed_gets"] == 0 else "NOT met"
            lines.append(
                f"- {name}: in flight on the killed host (nginx had connected, no answer came): "
                f"{i['POST']} POST, {i['GET']} GET, of which {i['lost']} ended in an error for the "
                f"client (nginx passes a GET on to the next host, not a POST that was sent); "
                f"{i['refused_attempts']} later attempts refused there. Target (only its "
                f"in-flight POSTs lost): {verdict}"
            )
        else:
            met = run["failed"] == 0 and None not in run.get("new_version_after", {}).values()
            target = "0 failed requests" + (
                ", every host's new code answering" if "new_version_after" in run else ""
            )
            lines.append(f"- {name}: target ({target}): {'met' if met else 'NOT met'}")
    if data.get("notes"):
        lines += [f"- {n}" for n in data["notes"]]
    lines += ["", "<details><summary>nginx.conf</summary>", "", "```nginx",
              nginx_conf(Path("TMP")).rstrip(), "```", "", "</details>", ""]  # fmt: skip
    return "\n".join(lines)


def supports(venv: Path, flag: str) -> bool:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "rwsgi", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return flag in done.stdout


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--server", default="rwsgi", choices=sorted(HOST_SERVERS))
    parser.add_argument("--rate", type=float, default=750, help="req/s in all")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--post-share", type=float, default=0.5)
    parser.add_argument("--post-bytes", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=5, help="per request, s")
    parser.add_argument("--settle", type=float, default=3, help="s of load before the action")
    parser.add_argument("--after", type=float, default=6, help="s of load after the action")
    parser.add_argument("--exit-timeout", type=float, default=40,
                        help="roll-restart: s to wait for a host's old server to exit")  # fmt: skip
    parser.add_argument(
        "--health-flags", default="auto", choices=("auto", "yes", "no"),
        help="roll-restart with rwsgi: pass --health-path/--health-drain-delay (auto: if "
        "`rwsgi --help` lists them)",
    )  # fmt: skip
    parser.add_argument("--start-timeout", type=float, default=30)
    parser.add_argument("--venv", type=Path, default=BENCHES / ".venv")
    parser.add_argument("--logs", type=Path, default=BENCHES / ".logs")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--append", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--from-json", type=Path)
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def collect(args: argparse.Namespace) -> dict:
    notes = []
    if args.server == "rwsgi":
        wanted = args.health_flags
        if wanted == "auto":
            args.health_flags = supports(args.venv, "--health-drain-delay")
            if not args.health_flags:
                notes.append(
                    "this rwsgi has no --health-drain-delay yet: roll-restart ran without "
                    "--health-path/--health-drain-delay"
                )
        else:
            args.health_flags = wanted == "yes"
    else:
        args.health_flags = False
    data: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": reload.versions(args.venv),
        "nginx": subprocess.run([str(NGINX), "-v"], capture_output=True, text=True,
                                check=False).stderr.strip().replace("nginx version: ", ""),
        "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list))},
        "runs": [],
        "notes": notes,
    }  # fmt: skip
    fleet = Fleet(args)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        fleet.create_namespaces()
        for name in args.scenarios:
            try:
                run = run_scenario(fleet, name)
            except FleetFailed as error:
                run = {"scenario": name, "failed_run": str(error)}
                fleet.stop_nginx()
            data["runs"].append(run)
            log(f"[{name}] " + (run.get("failed_run") or
                f"{run['requests']:,} requests, {run['failed']} failed {run['by_kind']}, "
                f"{run['throughput']['median']:.0f} req/s median, worst "
                f"{run['throughput']['worst']}"))  # fmt: skip
    finally:
        fleet.close()
        signal.signal(signal.SIGTERM, previous)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        if os.geteuid() != 0:
            log("fleet.py must run as root: it creates network namespaces and veth pairs "
                "(CAP_NET_ADMIN) and runs the servers and nginx inside them")  # fmt: skip
            return 2
        for tool in ("ip",):
            if shutil.which(tool) is None:
                log(f"{tool} is not installed (iproute2)")
                return 2
        if not NGINX.exists():
            log(f"no {NGINX}: run benches/setup.sh (nginx-light)")
            return 2
        if not (args.venv / "bin" / HOST_SERVERS[args.server].binary).exists():
            log(f"{args.server} is not in {args.venv}: run benches/setup.sh")
            return 2
        args.logs.mkdir(parents=True, exist_ok=True)
        try:
            data = collect(args)
        except KeyboardInterrupt:
            log("interrupted; everything the run made is removed")
            return 130
        if args.json:
            args.json.write_text(json.dumps(data, indent=1))
    reload.publish(render(data), args.output, args.append, bench="fleet", data=data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
