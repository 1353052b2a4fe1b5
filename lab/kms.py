"""AWS KMS stand-in: a moto server on 127.0.0.1 (the `moto[server]` package), for awskms seals and K10 CMK passkeys."""

import os
import sys
import time
import urllib.error
import urllib.request

from lab import _process
from lab.openbao import LabError

# Credentials moto accepts; they are fake and only ever sent to the loopback server.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


class MotoKMSServer(_process.BackgroundServer):
    def __init__(self, workdir, port=None):
        self.workdir = _process.private_dir(workdir)
        self.port = port or _process.free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.workdir, "moto.log")

    def start(self, timeout=30.0):
        moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
        return self.launch([moto, "-H", "127.0.0.1", "-p", str(self.port)], lambda: self._wait(timeout),
                           cwd=self.workdir)

    def _wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError("moto_server exited:\n" + _process.tail(self.log_path))
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):  # noqa: S310 - loopback
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise LabError("moto_server did not answer on %s" % self.endpoint)

    def client(self):
        import boto3  # pylint: disable=import-outside-toplevel
        return boto3.client("kms", endpoint_url=self.endpoint, region_name=FAKE_CREDENTIALS["AWS_REGION"],
                            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def create_key(self, description="lab"):
        return self.client().create_key(Description=description)["KeyMetadata"]["KeyId"]
