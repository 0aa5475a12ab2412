"""A pip.conf naming a company CA and index still works in the bootstrap's isolated children.

A loopback HTTPS index with a self-signed certificate stands for the company mirror; a pip.conf
names it and its certificate (given as the user's ``PIP_CONFIG_FILE``, the file pip reads last, so
that this machine's own /etc/pip.conf cannot override it; which files pip reads, in which order,
is tested in tests/test_bootstrap.py). A real ``pip install`` run in ``child_env`` reaches the
index and installs from it; the same install with the isolation alone
(``PIP_CONFIG_FILE=os.devnull``, nothing carried) does not, which shows what the carrying fixes.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import http.server
import importlib.util
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from installer_scripts import sibling

bootstrap_children = sibling("bootstrap_children")
bootstrap_pipconf = sibling("bootstrap_pipconf")

pytestmark = pytest.mark.installers

PACKAGE, VERSION = "tb_net_probe", "1.0"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for 127.0.0.1: with ``cryptography`` if installed, else ``openssl``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available to "
                        "make a self-signed certificate")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _with_cryptography(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def _index(root: Path) -> None:
    """A PEP 503 simple index holding one small wheel."""
    spec = importlib.util.spec_from_file_location("isolation_tests", Path(__file__).with_name("test_isolation.py"))
    isolation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(isolation)
    _write_wheel = isolation._write_wheel
    files = root / "files"
    files.mkdir(parents=True)
    wheel = _write_wheel(files, PACKAGE, VERSION)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / PACKAGE.replace("_", "-")
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>')


@pytest.fixture
def https_index(tmp_path) -> Iterator[dict]:
    cert, key = _self_signed(tmp_path)
    root = tmp_path / "index"
    _index(root)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"https://127.0.0.1:{server.server_address[1]}/simple/", "cert": cert,
           "requests": requests}
    server.shutdown()
    server.server_close()


def _user_env(tmp_path: Path, index: dict) -> dict:
    """A user whose pip.conf names the index and its CA; no CA variables at all."""
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\ncert = {index['cert']}\ntimeout = 20\nretries = 0\n"
                    f"[install]\nindex-url = {index['url']}\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PIP_") and key not in (
               "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
               "TUNEBENCH_PIP_SOURCES", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), PIP_CONFIG_FILE=str(conf))
    return env


def _install(env: dict, target: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps", "--target", str(target),
            f"{PACKAGE}=={VERSION}"]
    return bootstrap_children.run_child(argv, env=env, capture=True)


def test_a_child_pip_reaches_the_index_with_the_cert_of_the_pip_conf(tmp_path, https_index):
    user = _user_env(tmp_path, https_index)
    env = bootstrap_children.child_env(user)
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert env["PIP_CERT"] == str(https_index["cert"]) and env["PIP_INDEX_URL"] == https_index["url"]
    done = _install(env, tmp_path / "target")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "target" / PACKAGE / "__init__.py").is_file()
    assert any(path.startswith("/files/") for path in https_index["requests"])


def test_without_carrying_the_isolated_child_fails_on_the_certificate(tmp_path, https_index):
    user = _user_env(tmp_path, https_index)
    isolated = dict(bootstrap_children.child_env(user))
    for key in bootstrap_pipconf.network_env(user):
        isolated.pop(key)
    isolated.update(PIP_INDEX_URL=https_index["url"], PIP_RETRIES="0")  # the index, not its certificate
    done = _install(isolated, tmp_path / "target")
    assert done.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in done.stdout + done.stderr or "certificate" in (
        done.stdout + done.stderr).lower()
