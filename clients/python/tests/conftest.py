"""Starts a real keyleash gateway (clients/testing/gateway.mjs: the built package + the local
Stripe sandbox) once per test session."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keyleash import Keyleash  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "clients" / "testing" / "gateway.mjs"


class Gateway:
    def __init__(self, info):
        self.api_url = info["api_url"]
        self.proxy_url = info["proxy_url"]
        self.admin_token = info["admin_token"]
        self.stripe_test_secret = info["stripe_test_secret"]
        self.inspect_url = info["inspect_url"]
        self.twilio_account_sid = info["twilio_account_sid"]

    def client(self, **kw):
        return Keyleash(self.api_url, self.proxy_url, self.admin_token, **kw)

    def stripe_requests(self):
        """What the Stripe sandbox received (what Stripe would have seen)."""
        return requests.get(self.inspect_url + "/requests", timeout=5).json()

    def key(self, key_id):
        return self.client().get_key(key_id)


@pytest.fixture(scope="session")
def gateway():
    node = shutil.which(os.environ.get("NODE", "node"))
    if node is None:
        pytest.fail("node is not on PATH: the tests need it to start the gateway")
    proc = subprocess.Popen([node, str(SCRIPT)], cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        pytest.fail(f"the gateway did not start (exit {proc.returncode}); build it with `npm run build -w packages/keyleash`")
    try:
        yield Gateway(json.loads(line))
    finally:
        proc.stdin.close()  # the script exits when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def client(gateway):
    return gateway.client()
