"""The HTML report in a real browser: screenshot, chart and drill-down present, no network request.

Skipped when Chromium is absent (CI installs Debian's ``chromium``). How "no network request" is
proven: Chromium runs with every request forced through a proxy we own (``--proxy-server`` with
``--proxy-bypass-list=<-loopback>`` so even loopback goes through it) and a host resolver that
resolves nothing; the proxy records every connection. A positive control page with an external image
proves the trap fires, so a silent proxy means the report fetched nothing, not that the trap is broken.
The report's CSP (``default-src 'none'``) is checked too, and no http(s) URL may appear in src/href.

The screenshot is kept under ``$SEGUR_BENCH_ARTIFACTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is absent (/usr/bin/chromium)"),
]


class TrapProxy:
    """A TCP listener standing in for an HTTP proxy: records the first line of every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.seen.append(data.split(b"\r\n", 1)[0].decode("latin-1") or "<connection>")
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


# Chromium's own services (component updater, network time, sign-in), which some Chromium builds
# contact at start-up whatever the flags. Exact host names only: a report fetching anything else —
# a web font, a CDN script, an image — is caught. The positive control fetches a host outside this set.
BROWSER_SERVICE_HOSTS = frozenset(
    {
        "update.googleapis.com",
        "accounts.google.com",
        "clients1.google.com",
        "clients2.google.com",
        "redirector.gvt1.com",
        "optimizationguide-pa.googleapis.com",
        "safebrowsingohttpgateway.googleapis.com",
        "content-autofill.googleapis.com",
    }
)


def _host(request_line: str) -> str:
    """Host of a proxied request line: ``CONNECT h:443 HTTP/1.1`` or ``GET http://h/path HTTP/1.1``."""
    parts = request_line.split()
    if len(parts) < 2:
        return request_line
    target = parts[1]
    if "://" in target:
        target = target.split("://", 1)[1]
    return target.split("/", 1)[0].rsplit(":", 1)[0]


def page_requests(proxy: TrapProxy) -> list[str]:
    return [line for line in proxy.seen if _host(line) not in BROWSER_SERVICE_HOSTS]


@pytest.fixture
def trap() -> Iterator[TrapProxy]:
    proxy = TrapProxy()
    yield proxy
    proxy.close()


def chromium(url: str, profile: Path, proxy_port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--metrics-recording-only",
        "--no-pings",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,"
        "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--virtual-time-budget=3000",
        *extra,
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def failed_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "demo"
    proc = run_cli("demo", "--out", str(out), "--fault", "ins.bad-key", "--no-db")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one requirement fails: there is a drill-down
    return out / "report.html"


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SEGUR_BENCH_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_screenshot_is_taken_and_kept(failed_demo: Path, tmp_path: Path, trap: TrapProxy) -> None:
    shot = tmp_path / "report.png"
    proc = chromium(
        failed_demo.as_uri(), tmp_path / "profile", trap.port, f"--screenshot={shot}", "--window-size=1280,2000"
    )
    assert shot.exists(), proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000, "a blank page compresses to a few kB; the report should not"
    kept = _artifacts(tmp_path) / "report-failed-demo.png"
    shutil.copyfile(shot, kept)
    assert kept.stat().st_size == len(data)
    assert page_requests(trap) == [], f"the report made network requests: {page_requests(trap)}"


def test_dom_has_chart_and_drilldown_to_evidence(failed_demo: Path, tmp_path: Path, trap: TrapProxy) -> None:
    proc = chromium(failed_demo.as_uri(), tmp_path / "profile", trap.port, "--dump-dom")
    dom = proc.stdout
    assert "<svg" in dom and 'class="chart"' in dom and "bar-level" in dom
    # maturity comes before the requirements
    assert dom.index('id="maturity"') < dom.index('id="requirements"')
    # a failed requirement is an open <details> whose findings link to evidence anchors that exist
    failed = re.search(r'<details class="req st-row-failed" id="([^"]+)" open="?[^>]*>(.*?)</details>', dom, re.S)
    assert failed, "no expanded failed requirement in the DOM"
    links = re.findall(r'href="#(ev-[^"]+)"', failed.group(2))
    assert links, "the failed requirement links to no evidence"
    assert f'id="{links[0]}"' in dom
    # first click: the summary's "to fix" badge leads to the failed requirement
    assert f'href="#{failed.group(1)}"' in dom[: dom.index('id="requirements"')]
    assert page_requests(trap) == [], f"the report made network requests: {page_requests(trap)}"


def test_report_forbids_fetches_statically(failed_demo: Path) -> None:
    html = failed_demo.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert "<script" not in html.lower()


def test_trap_detects_a_page_that_fetches(tmp_path: Path, trap: TrapProxy) -> None:
    """Positive control: without it, a broken trap would make the no-request assertions vacuous."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="http://leak.example.test/pixel.png">', encoding="utf-8")
    chromium(page.as_uri(), tmp_path / "profile", trap.port, "--dump-dom")
    assert any("leak.example.test" in line for line in page_requests(trap)), trap.seen
