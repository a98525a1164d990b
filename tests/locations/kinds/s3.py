"""The s3 kind on two real servers: `rclone serve s3` and `moto_server`.

Both enforce SigV4 signatures here: rclone with its --auth-key, moto once its IAM checks are
on (INITIAL_NO_AUTH_ACTION_COUNT lets the first requests create the users, then every request
must be signed by a key moto issued). Each location gets a bucket of its own.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backup_addon.locations.s3 import S3Location

BIN = Path(sys.executable).parent
# Short enough that a stopped server fails a test in seconds, long enough for a 256 MiB object.
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 10
MIN_SEND_RATE = 1 << 20  # on loopback a part that moves slower than this has stalled


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not open port {port} in {timeout} s:\n{log.read_text()[-4000:]}")


def _self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system trusts, like a NAS's own one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "server.crt", workdir / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _S3Provider:
    id = "s3"
    has_server = True
    supports_object_lock = False
    certificate: Path | None = None  # set when the server speaks https with its own certificate

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.key = ""
        self.secret = ""
        self._count = itertools.count()

    # --- what the conformance suite uses -------------------------------------------------

    def start(self, workdir: Path) -> None:
        self.port = _free_port()
        log = workdir / "server.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                self._command(workdir),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                start_new_session=True,
            )
        _wait_for_port(self.port, self.process, log)
        self._after_start()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def location(self, name: str, *, bucket: str | None = None, **options: Any) -> S3Location:
        """A location on a fresh bucket (or on `bucket`); `options` go to S3Location."""
        settings: dict[str, Any] = {
            "endpoint": self.endpoint,
            "access_key_id": self.key,
            "secret_access_key": self.secret,
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            "min_send_rate": MIN_SEND_RATE,
        }
        settings.update(options)
        return S3Location(name, bucket=bucket or self.make_bucket(), **settings)

    def location_with_wrong_credentials(self, name: str) -> S3Location:
        return self.location(name, bucket=self.make_bucket(), secret_access_key=f"wrong-{self.secret}")

    def pause_server(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume_server(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    # --- extras for the kind's own tests -------------------------------------------------

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.certificate else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def admin(self) -> Any:
        """A plain boto3 client with the provider's good key, to look behind the location's back."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
            verify=str(self.certificate) if self.certificate else None,
        )

    def make_bucket(self, *, object_lock: bool = False) -> str:
        name = f"b{next(self._count)}-{secrets.token_hex(4)}"
        extra = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        self.admin().create_bucket(Bucket=name, **extra)
        return name

    def _command(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _after_start(self) -> None:
        pass


class RcloneS3Provider(_S3Provider):
    """rclone's S3 server on a local folder; it checks every signature against one key pair."""

    id = "s3-rclone"

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__()
        self.tls = tls
        if tls:
            self.id = "s3-rclone-tls"

    def _command(self, workdir: Path) -> list[str]:
        tls: list[str] = []
        if self.tls:
            self.certificate, key = _self_signed_certificate(workdir)
            tls = ["--cert", str(self.certificate), "--key", str(key)]
        self.key, self.secret = "rclonekey", secrets.token_hex(16)
        data = workdir / "data"
        data.mkdir()
        config = workdir / "rclone.conf"
        config.touch()
        return [
            str(BIN / "rclone"),
            "serve",
            "s3",
            "--config",
            str(config),
            "--addr",
            f"127.0.0.1:{self.port}",
            "--auth-key",
            f"{self.key},{self.secret}",
            *tls,
            str(data),
        ]


class MotoS3Provider(_S3Provider):
    """moto's S3 emulator with its IAM checks on: wrong keys fail, policies are enforced."""

    id = "s3-moto"
    supports_object_lock = True
    # Requests moto serves before it checks signatures: create the user, its key, its policy.
    SETUP_REQUESTS = 3

    def _command(self, workdir: Path) -> list[str]:
        return [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def _environment(self) -> dict[str, str]:
        return dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(self.SETUP_REQUESTS))

    def _after_start(self) -> None:
        self.key, self.secret = self._user("backup", ["*"], key=None)

    def _user(self, name: str, actions: list[str], *, key: tuple[str, str] | None) -> tuple[str, str]:
        signed = (
            {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]}
            if key
            else {
                "aws_access_key_id": "setup",
                "aws_secret_access_key": "setup",
            }
        )
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1", **signed)
        iam.create_user(UserName=name)
        created = iam.create_access_key(UserName=name)["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        return created["AccessKeyId"], created["SecretAccessKey"]

    def read_only_location(self, name: str, *, bucket: str) -> S3Location:
        """A location whose key may list and read the bucket but not write to it."""
        key, secret = self._user(
            f"reader{next(self._count)}", ["s3:Get*", "s3:List*"], key=(self.key, self.secret)
        )
        return self.location(name, bucket=bucket, access_key_id=key, secret_access_key=secret)


PROVIDERS = [RcloneS3Provider(), MotoS3Provider()]
