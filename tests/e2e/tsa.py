"""A real RFC 3161 time-stamp authority on loopback, built on the ``openssl`` binary.

:func:`make_pki` creates, with ``openssl`` in a directory, an EC P-256 root CA and a TSA
certificate under it (``extendedKeyUsage = critical,timeStamping``, or a plain signing
certificate with ``eku=False``) plus the ``openssl ts`` configuration. :class:`LoopbackTSA`
serves it on 127.0.0.1: each POST of ``application/timestamp-query`` runs ``openssl ts -reply``
(under a lock: the serial file is shared) and answers ``application/timestamp-reply``. Its
``mode`` breaks it on purpose: ``content_type`` (a right token, labelled text/html), ``http_500``,
``garbage`` (random bytes as a reply), ``hang`` (no answer until stopped), ``down`` (the port
closed).

Only the signer's certificate is embedded in tokens (``certs`` is not set): rfc3161-client's
strict DER parser refuses the unsorted certificate SET that OpenSSL writes for a chain.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["ok", "content_type", "http_500", "garbage", "hang", "down"]

_TS_CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = {dir}/serial
crypto_device = builtin
signer_cert = {dir}/tsa.pem
signer_key = {dir}/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256

[ tsa_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping

[ plain_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
"""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    """A TSA's files: its root CA certificate, its signing certificate and ts configuration."""

    directory: Path
    root_pem: Path
    tsa_pem: Path
    config: Path


def make_pki(directory: Path, name: str = "Test TSA", *, eku: bool = True) -> Pki:
    """A root CA ``<name> Root`` and a TSA certificate ``<name>`` under it, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "ts.cnf"
    config.write_text(_TS_CONFIG.format(dir=directory))
    (directory / "serial").write_text("01\n")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key",
             cwd=directory)  # fmt: skip
    _openssl("req", "-x509", "-new", "-key", "root.key", "-subj", f"/CN={name} Root",
             "-days", "3650", "-out", "root.pem",
             "-addext", "basicConstraints=critical,CA:true",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tsa.key",
             cwd=directory)  # fmt: skip
    _openssl("req", "-new", "-key", "tsa.key", "-subj", f"/CN={name}", "-out", "tsa.csr",
             cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "tsa.csr", "-CA", "root.pem", "-CAkey", "root.key",
             "-CAcreateserial", "-days", "3650", "-extfile", str(config),
             "-extensions", "tsa_ext" if eku else "plain_ext", "-out", "tsa.pem",
             cwd=directory)  # fmt: skip
    return Pki(directory, directory / "root.pem", directory / "tsa.pem", config)


class Reply:
    """Runs ``openssl ts -reply`` for one query at a time (the serial file is shared)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self._lock = threading.Lock()
        self._n = 0

    def __call__(self, query: bytes) -> bytes:
        with self._lock:
            self._n += 1
            q = self.pki.directory / f"q{self._n}.tsq"
            r = self.pki.directory / f"r{self._n}.tsr"
            q.write_bytes(query)
            _openssl("ts", "-reply", "-config", str(self.pki.config), "-queryfile", q.name,
                     "-out", r.name, cwd=self.pki.directory)  # fmt: skip
            return r.read_bytes()


class LoopbackTSA:
    """An HTTP time-stamp authority on 127.0.0.1 (see the module docstring); stop() it."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.mode: Mode = "ok"
        self.requests = 0
        self._reply = Reply(pki)
        self._released = threading.Event()
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                tsa.requests += 1
                if tsa.mode == "hang":
                    tsa._released.wait(60)
                    return
                if tsa.mode == "http_500":
                    self._answer(500, "text/plain", b"TSA is broken\n")
                    return
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self._answer(400, "text/plain", b"not a time-stamp query\n")
                    return
                if tsa.mode == "garbage":
                    self._answer(200, "application/timestamp-reply", os.urandom(300))
                    return
                kind = "text/html" if tsa.mode == "content_type" else "application/timestamp-reply"
                self._answer(200, kind, tsa._reply(query))

            def _answer(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/tsa"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def go_down(self) -> None:
        """Close the port: connections are refused from now on."""
        self.mode = "down"
        self.stop()

    def stop(self) -> None:
        """Stop serving and release hung requests (idempotent)."""
        self._released.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()

    def __enter__(self) -> LoopbackTSA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
