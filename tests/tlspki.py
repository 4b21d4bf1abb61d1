"""Test certificates made with the `openssl` commands of the Mosquitto operations guide.

make_pki(dir) builds, in dir:
  ca.key/ca.crt        the CA (`req -new -x509 -days 365 -extensions v3_ca`, key with a passphrase)
  server.key/.crt      `genrsa 2048`, `req -new`, `x509 -req -CA ... -CAcreateserial -days 360`,
                       CN and subjectAltName 127.0.0.1 / localhost
  server2.key/.crt     a second server certificate (certificate rotation tests)
  client.key/.crt      a client certificate, CN "client1"
  expired.key/.crt     a client certificate whose validity ended in 2020 (`openssl ca -enddate`)
  other-ca.*, other-client.*  a second, unrelated CA and a client certificate it signed
  psk.txt              a psk_file in Mosquitto's identity:hexkey format
Everything runs non-interactively (-subj, -passout/-passin).
"""

import os
import select
import socket
import subprocess
import time

import pytest

from mqttraw import RawClient

CA_PASS = "pass:hato-test-ca"
PSK_IDENTITY = "psk-client"
PSK_KEY = "0123456789abcdef0123456789abcdef"


def _run(cwd, *args):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr.decode(errors='replace')}")
    return r


def _ca(d, name, cn):
    _run(d, "req", "-new", "-x509", "-days", "365", "-extensions", "v3_ca",
         "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={cn}",
         "-passout", CA_PASS)


def _leaf(d, ca, name, cn, san=None):
    _run(d, "genrsa", "-out", f"{name}.key", "2048")
    _run(d, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "360", "-passin", CA_PASS]
    if san:
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\n")
        args += ["-extfile", f"{name}.ext"]
    _run(d, *args)


def _expired(d, ca, name, cn):
    """A certificate valid only in January 2020, signed with `openssl ca -startdate/-enddate`."""
    _run(d, "genrsa", "-out", f"{name}.key", "2048")
    _run(d, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    os.makedirs(os.path.join(d, "ca-db"), exist_ok=True)
    open(os.path.join(d, "ca-db", "index.txt"), "w").close()
    with open(os.path.join(d, "ca-db", "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = test_ca\n[test_ca]\ndir = ca-db\ndatabase = $dir/index.txt\n"
                "new_certs_dir = $dir\nserial = $dir/serial\ndefault_md = sha256\n"
                "policy = any\n[any]\ncommonName = supplied\n")
    _run(d, "ca", "-config", "ca.cnf", "-batch", "-notext", "-in", f"{name}.csr",
         "-out", f"{name}.crt", "-cert", f"{ca}.crt", "-keyfile", f"{ca}.key",
         "-passin", CA_PASS, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z")


def make_pki(d):
    d = str(d)
    _ca(d, "ca", "hato test CA")
    _leaf(d, "ca", "server", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "ca", "server2", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "ca", "client", "client1")
    _expired(d, "ca", "expired", "expired-client")
    _ca(d, "other-ca", "other CA")
    _leaf(d, "other-ca", "other-server", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "other-ca", "other-client", "client1")
    with open(os.path.join(d, "psk.txt"), "w") as f:
        f.write(f"# identity:key\n{PSK_IDENTITY}:{PSK_KEY}\n")
    return {n: os.path.join(d, n) for n in os.listdir(d)}


def make_extra(d):
    """Files for CRL and DH tests: a client certificate revoked in crl.pem (crl-empty.pem is the
    CA's CRL from before the revocation), and DH parameters."""
    d = str(d)
    # A certificate issued through `openssl ca` so that it can be revoked.
    _run(d, "genrsa", "-out", "revoked.key", "2048")
    _run(d, "req", "-new", "-key", "revoked.key", "-out", "revoked.csr", "-subj", "/CN=revoked")
    _run(d, "ca", "-config", "ca.cnf", "-batch", "-notext", "-in", "revoked.csr",
         "-out", "revoked.crt", "-cert", "ca.crt", "-keyfile", "ca.key", "-passin", CA_PASS,
         "-days", "30")
    _run(d, "ca", "-config", "ca.cnf", "-gencrl", "-crldays", "30", "-out", "crl-empty.pem",
         "-cert", "ca.crt", "-keyfile", "ca.key", "-passin", CA_PASS)
    _run(d, "ca", "-config", "ca.cnf", "-revoke", "revoked.crt", "-cert", "ca.crt",
         "-keyfile", "ca.key", "-passin", CA_PASS)
    _run(d, "ca", "-config", "ca.cnf", "-gencrl", "-crldays", "30", "-out", "crl.pem",
         "-cert", "ca.crt", "-keyfile", "ca.key", "-passin", CA_PASS)
    # RFC 7919 group parameters: instant, unlike `openssl dhparam 2048`.
    _run(d, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
         "-out", "dh.pem")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Every file of make_pki and make_extra, by name -> path, made once per session."""
    d = tmp_path_factory.mktemp("pki")
    make_pki(d)
    make_extra(d)
    return {n: os.path.join(str(d), n) for n in os.listdir(str(d))}


class TLSClient(RawClient):
    """mqttraw.RawClient over TLS: the same recv/expect helpers on an ssl socket."""

    def __init__(self, port, context, version=4, timeout=5.0, host="127.0.0.1",
                 server_hostname="127.0.0.1"):
        self.version = version
        self.timeout = timeout
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = context.wrap_socket(raw, server_hostname=server_hostname)
        except Exception:
            raw.close()
            raise
        self.buf = bytearray()

    def _fill(self, deadline):
        # Decrypted bytes may wait in the ssl object while the socket is idle.
        if not self.sock.pending():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no data from broker")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                raise TimeoutError("no data from broker")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            raise ConnectionError("connection closed by broker")
        self.buf += data
