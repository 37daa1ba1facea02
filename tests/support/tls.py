"""Throw-away TLS material for local test servers (a private CA and a 127.0.0.1 server cert).

The CA certificate is written to a PEM file so a process under test can trust it
explicitly (talkie's ``live.ca_file``) instead of touching the system bundle or
``SSL_CERT_FILE``.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path


class LocalTLS:
    """A fresh test CA plus a server certificate for ``IP:127.0.0.1`` and ``DNS:localhost``.

    ``ca_file`` is the CA certificate (PEM) on disk; ``server_context()`` and
    ``client_context()`` build ready-to-use ``ssl.SSLContext`` objects.
    Call ``cleanup()`` (or use it as a context manager) to delete the files.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        import trustme  # test-only dependency

        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._owns_dir = directory is None
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="talkie-tls-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = str(self.directory / "test-ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_file)
        self.cert_file = str(self.directory / "server.pem")
        self._cert.private_key_and_cert_chain_pem.write_to_path(self.cert_file)

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the 127.0.0.1 certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts only the test CA (what talkie builds from ``ca_file``)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def cleanup(self) -> None:
        """Delete the PEM files (and the temporary directory if this object created it)."""
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            for name in (self.ca_file, self.cert_file):
                Path(name).unlink(missing_ok=True)

    def __enter__(self) -> "LocalTLS":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
