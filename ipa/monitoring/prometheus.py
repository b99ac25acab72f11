"""A real Prometheus server for one run: generated config, free port, TSDB in the run folder.

It scrapes the router and every stage process each second, which is what the adapter's
monitor then queries through PromQL, as it would on a cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Mapping

import yaml

from ipa.errors import IpaError
from ipa.processes import Child, ProcessGroup, free_port, wait_http

DEBIAN_PACKAGE = "prometheus"
SCRAPE_INTERVAL_S = 1


class PrometheusMissing(IpaError):
    """No Prometheus binary to run."""


def find_binary(explicit: str | os.PathLike | None = None) -> str:
    """The Prometheus binary: ``explicit``, $IPA_PROMETHEUS, or `prometheus` on PATH."""
    candidate = explicit or os.environ.get("IPA_PROMETHEUS")
    if candidate:
        path = shutil.which(str(candidate)) or (str(candidate) if os.access(str(candidate), os.X_OK) else None)
        if not path:
            raise PrometheusMissing(f"Prometheus binary {str(candidate)!r} not found or not executable")
        return path
    path = shutil.which("prometheus")
    if path:
        return path
    raise PrometheusMissing("the Prometheus binary was not found on PATH; install the Debian package "
                            f"`{DEBIAN_PACKAGE}` (sudo apt-get install {DEBIAN_PACKAGE}) or set IPA_PROMETHEUS "
                            "to the binary's path")


def scrape_config(targets: Mapping[str, Mapping[str, int]], host: str = "127.0.0.1") -> dict:
    """Prometheus config scraping ``targets`` = {job: {instance name: port}} every second."""
    jobs = []
    for job, ports in targets.items():
        jobs.append({
            "job_name": job,
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
            "static_configs": [{"targets": [f"{host}:{port}"], "labels": {"component": name}}
                               for name, port in ports.items()],
        })
    return {"global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
            "scrape_configs": jobs}


class PrometheusServer:
    def __init__(self, folder: Path, targets: Mapping[str, Mapping[str, int]], group: ProcessGroup,
                 binary: str | None = None, port: int | None = None, host: str = "127.0.0.1"):
        self.folder, self.targets, self.group, self.host = Path(folder), targets, group, host
        self.binary = find_binary(binary)
        self.port = port or free_port(host)
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        return [self.binary, f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'tsdb'}", f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle", "--log.level=warn", "--storage.tsdb.retention.time=7d"]

    def start(self, timeout_s: float = 30.0) -> "PrometheusServer":
        if self.child is None and (self.folder / "tsdb").exists():
            # a fresh TSDB per run: an earlier run's series would look like this run's data
            shutil.rmtree(self.folder / "tsdb")
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(self.targets, self.host),
                                                                   sort_keys=False))
        self.child = self.group.start("prometheus", self.argv(), self.folder / "prometheus.log")
        wait_http(f"{self.url}/-/ready", self.child, timeout_s)
        self.wait_scraping(timeout_s)
        return self

    def wait_scraping(self, timeout_s: float = 30.0) -> None:
        """Until every target has been scraped once. Prometheus is ready well before that (its
        target discovery updates every 5 s), and a run must not start while its counters are
        unobserved: the first seconds would have no baseline."""
        want = sum(len(ports) for ports in self.targets.values())
        # timestamp(up == 1): when each target was last scraped successfully, so that samples a
        # previous Prometheus process left in the TSDB do not count
        url = f"{self.url}/api/v1/query?query=timestamp%28up%20%3D%3D%201%29"
        started = time.time()
        deadline = time.monotonic() + timeout_s
        up = 0
        while time.monotonic() < deadline:
            if self.child is not None and not self.child.alive():
                raise IpaError(f"Prometheus exited; its log ends:\n{self.child.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    result = json.loads(r.read())["data"]["result"]
                mine = {f"{self.host}:{p}" for ports in self.targets.values() for p in ports.values()}
                up = sum(1 for s in result if float(s["value"][1]) >= started - 0.5
                         and s["metric"].get("instance") in mine)
                if up >= want:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise IpaError(f"Prometheus at {self.url} scraped {up} of {want} targets within {timeout_s:g}s; "
                       f"see {self.folder / 'prometheus.log'}")

    def stop(self) -> None:
        if self.child is not None:
            # Prometheus flushes its head block on SIGTERM, which takes seconds on a busy machine;
            # killed midway, a restart on the same TSDB may refuse to open it
            self.child.stop(grace_s=10.0)
