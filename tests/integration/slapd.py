"""A real OpenLDAP server for tests: slapd on loopback with TLS, loaded from conf/."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
BASE_DN = "dc=example,dc=org"
ADMIN_DN = "cn=admin,dc=example,dc=org"
ADMIN_PW = "mipro-test-secret"


def available() -> bool:
    return bool(shutil.which("slapd") or Path("/usr/sbin/slapd").exists()) and \
        Path("/usr/lib/ldap/back_mdb.so").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificates(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1, made here with cryptography."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mipro test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Slapd:
    def __init__(self, workdir: Path, ldif: Path = REPO / "conf" / "subscribers.ldif",
                 netns: str | None = None) -> None:
        self.dir = workdir
        self.ldif = ldif
        self.port = _free_port()
        self.tls_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.netns = netns  # run it in this network namespace (a lab node's loopback)
        self.wrap = ["ip", "netns", "exec", netns] if netns else []

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    def start(self) -> Slapd:
        d = self.dir
        (d / "db").mkdir(parents=True)
        _certificates(d)
        conf = d / "slapd.conf"
        conf.write_text(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include {REPO / 'conf' / 'mipro.schema'}
pidfile {d / 'slapd.pid'}
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {d / 'ca.pem'}
TLSCertificateFile {d / 'server.pem'}
TLSCertificateKeyFile {d / 'server.key'}
database mdb
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PW}
directory {d / 'db'}
""")
        subprocess.run(["slapadd", "-f", str(conf), "-l", str(self.ldif)], check=True,
                       capture_output=True)
        self.proc = subprocess.Popen(
            [*self.wrap, "slapd", "-f", str(conf), "-h", f"{self.url}/ {self.ldaps_url}/",
             "-d", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self._probe()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"slapd exited: {self.proc.stderr.read()!r}") from None
                time.sleep(0.1)
        raise RuntimeError("slapd did not start listening")

    def _probe(self) -> None:
        if self.netns is None:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
        probe = f"import socket; socket.create_connection(('127.0.0.1', {self.port}), 0.5)"
        if subprocess.run([*self.wrap, "python3", "-c", probe], capture_output=True).returncode:
            raise OSError("not listening yet")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
