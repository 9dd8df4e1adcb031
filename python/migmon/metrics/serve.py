"""The metrics server: bound before the run, one scrape at a time from a
thread of its own, at most MAX_SCRAPES_PER_S a second."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

from migmon.errors import ConfigError, ResourceError
from migmon.metrics.base import ToolMetrics, prometheus

#: Scrapes answered per second at most; the rest get 429 Too Many Requests.
MAX_SCRAPES_PER_S = 50
#: A scraper that sends nothing gives up its turn after this long, s.
REQUEST_TIMEOUT_S = 2.0


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; a port alone listens on
    every address."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = ""
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(
            f"--metrics: write an IPv6 address in brackets ([::1]:PORT), not {text!r}"
        )
    try:
        value = int(port)
    except ValueError:
        raise ConfigError(f"--metrics: expected [HOST:]PORT, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"--metrics: the port must be between 0 and 65535, not {value}")
    return host, value


class _Handler(BaseHTTPRequestHandler):
    """GET /metrics (or /): the exposition the scraper asked for."""

    server: _Server
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        srv = self.server
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self._send(404, b"not found: ask /metrics\n", "text/plain")
        elif not srv.admit():
            self._send(429, b"too many scrapes\n", "text/plain")
        else:
            encode, ctype = srv.choose(self.headers.get("Accept", ""))
            self._send(200, encode(srv.registry), ctype)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape is not news


class _Server(socketserver.TCPServer):
    """One scrape at a time, from one thread: a flood of scrapes or a
    scraper that stalls costs a bounded share of one core. (Not
    ``HTTPServer``, whose bind looks the host name up in the DNS.)"""

    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], registry: Any, warn: Callable[[str], None]) -> None:
        host = addr[0]
        self.address_family = socket.AF_INET6 if ":" in host or not host else socket.AF_INET
        if not host:
            addr = ("::" if socket.has_ipv6 else "0.0.0.0", addr[1])
            if not socket.has_ipv6:
                self.address_family = socket.AF_INET
        self.registry = registry
        self.choose = prometheus().exposition.choose_encoder
        self.warn = warn
        self.window = (0.0, 0)
        self.refused = 0
        super().__init__(addr, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # Every address, IPv4 ones included, when no host was given.
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def admit(self) -> bool:
        """At most MAX_SCRAPES_PER_S a second; says so once when refusing."""
        now = time.monotonic()
        start, n = self.window
        if now - start >= 1.0:
            start, n = now, 0
        self.window = (start, n + 1)
        if n < MAX_SCRAPES_PER_S:
            return True
        if not self.refused:
            self.warn(
                f"metrics: more than {MAX_SCRAPES_PER_S} scrapes a second; "
                "answering the rest '429 Too Many Requests'"
            )
        self.refused += 1
        return False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a scraper that went away is its own business


class Exporter:
    """Serves a tool's metrics on ``[HOST:]PORT`` from a thread of its own
    until closed. Bound before the run starts (a port in use is one line,
    before any measurement); the tool's metrics are attached once its run
    exists, and until then a scrape sees the process's figures only."""

    def __init__(self, where: str) -> None:
        pc = prometheus()
        host, port = parse_address(where)
        self.metrics: ToolMetrics | None = None
        registry = pc.CollectorRegistry(auto_describe=False)
        registry.register(self)
        # The tool's own CPU, memory and open files.
        pc.ProcessCollector(namespace="migmon", registry=registry)
        try:
            self.server = _Server((host, port), registry, _warn)
        except OSError as e:
            why = e.strerror or str(e)
            raise ResourceError(f"--metrics {where}: {why}") from None
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.2,), name="metrics", daemon=True
        )
        self.thread.start()

    def attach(self, metrics: ToolMetrics) -> ToolMetrics:
        self.metrics = metrics
        return metrics

    def collect(self) -> Iterable[Any]:
        m = self.metrics
        return m.collect() if m is not None else []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _warn(line: str) -> None:
    """One line on stderr (nowhere when stderr is closed)."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"mig_mon: {line}\n")
            sys.stderr.flush()
