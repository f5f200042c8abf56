"""The README's install, done as a user on a Debian/Ubuntu system Python does it, offline: a venv
(with the system's packages, where Flask and requests come from), the client built as a wheel
and installed into it, and a tiny Flask app run from another directory against the gateway."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]

APP = textwrap.dedent(
    """
    import json, sys
    import keyleash
    from flask import Flask, g
    from keyleash import Keyleash, is_cap_exhausted
    from keyleash.flask import KeyleashFlask, proxy_session

    # Imported from the venv, not from the source tree.
    assert "site-packages" in keyleash.__file__, keyleash.__file__

    app = Flask(__name__)
    KeyleashFlask(app, client=Keyleash(), vendor="stripe", allowed_endpoints=["/v1/payment_intents"],
                  daily_usd_cap=0, cap_exhausted_status=402)

    @app.post("/pay")
    def pay():
        proxy_session().post("/stripe/v1/payment_intents", json={"amount": 500, "currency": "usd"})
        return {"ok": True}

    r = app.test_client().post("/pay")
    print(json.dumps({"status": r.status_code, "body": r.get_json(), "module": keyleash.__file__}))
    """
)


def test_wheel_installs_into_a_venv_and_a_flask_app_runs(gateway, tmp_path):
    # A copy of the source: building writes build/ and *.egg-info next to it.
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    wheels = tmp_path / "wheels"
    run = lambda *args: subprocess.run([str(py), "-m", "pip", *args], check=True, timeout=180, capture_output=True, text=True)  # noqa: E731
    run("wheel", "--no-index", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(src))
    built = sorted(wheels.glob("keyleash-*.whl"))
    assert built, "no wheel was built"
    run("install", "--no-index", "--no-build-isolation", str(built[0]))
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.py").write_text(APP)
    env = {"KEYLEASH_API_URL": gateway.api_url, "KEYLEASH_PROXY_URL": gateway.proxy_url, "KEYLEASH_ADMIN_TOKEN": gateway.admin_token, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(py), "app.py"], cwd=str(app_dir), env=env, check=True, timeout=60, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 402, out
    assert result["body"]["code"] == "cap_exhausted"
    assert str(venv) in result["module"]
