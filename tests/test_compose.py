"""docker-compose.yml and Dockerfile: services, profiles, and that every service's
command is a real ``hftsig`` command, run natively (no Docker engine here)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hftsig.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value, env=None):
    """Compose's ``${VAR}`` / ``${VAR:-default}`` substitution."""
    env = {} if env is None else env
    return _VAR.sub(lambda m: env.get(m[1]) or (m[2] or ""), value)


def entrypoint():
    """The Dockerfile's ENTRYPOINT (exec form)."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            return json.loads(line.split(None, 1)[1])
    raise AssertionError("Dockerfile has no ENTRYPOINT")


def command(name):
    svc = SERVICES[name]
    cmd = svc.get("command")
    assert isinstance(cmd, list), f"{name}: command must be a list (exec form)"
    return [interpolate(c) for c in cmd]


def service_env(name):
    return {k: interpolate(str(v)) for k, v in SERVICES[name].get("environment", {}).items()}


def profile(name):
    return sorted(s for s, v in SERVICES.items() if name in v.get("profiles", []))


def test_profiles_hold_the_right_services():
    assert set(profile("tick")) == {"simulator", "recorder-tick", "jupyter-tick"}
    assert set(profile("notick")) == {"recorder-live", "jupyter-live"}
    for name, svc in SERVICES.items():
        assert svc.get("profiles"), f"{name} would start outside the profiles"
        assert svc["build"] == "."
    assert (ROOT / "Dockerfile").is_file()
    assert entrypoint() == ["hftsig"]


def test_every_command_parses_as_an_hftsig_command():
    parser = build_parser()
    for name in SERVICES:
        args = parser.parse_args(command(name))
        assert callable(args.func), name
    tick, live = command("recorder-tick"), command("recorder-live")
    assert tick[0] == live[0] == "record"
    assert "--simulate" in tick and "--simulate" not in live
    assert command("simulator")[0] == "simulate"


def test_configuration_comes_from_the_environment():
    env = SERVICES["recorder-live"]["environment"]
    for key in ("HFTSIG_SYMBOLS", "HFTSIG_EXCHANGES", "HFTSIG_COINGECKO_API_KEY",
                "HFTSIG_BINANCE_API_KEY", "HFTSIG_KRAKEN_API_KEY", "HFTSIG_COINBASE_API_KEY"):
        assert key in env
    for key, value in env.items():
        assert str(value).startswith("${" + key), f"{key} must come from the environment"
    secrets = [k for k in env if k.endswith(("_API_KEY", "_API_SECRET"))]
    assert len(secrets) == 7
    assert all(interpolate(str(env[k])) == "" for k in secrets), "no key may be written here"
    # the symbols given in the environment reach the command line's defaults
    out = subprocess.run(
        [sys.executable, "-c",
         "from hftsig.cli import build_parser as b; a=b().parse_args(['record','x']);"
         "print(','.join(a.symbols), ','.join(a.exchanges))"],
        env=dict(os.environ, HFTSIG_SYMBOLS="SOL-USDT,ETH-BTC", HFTSIG_EXCHANGES="kraken",
                 PYTHONPATH=str(ROOT)), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SOL-USDT,ETH-BTC", "kraken"]


def run_hftsig(args, env=None, timeout=120):
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "hftsig", *args], env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_help_runs(name, capsys):
    from hftsig.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command(name)[0], "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: hftsig " + command(name)[0])


def test_simulator_service_runs_natively():
    r = run_hftsig(command("simulator") + ["--seconds", "1.5", "--interval", "0.5"],
                   env=service_env("simulator"))
    assert r.returncode == 0, r.stderr
    assert "binance" in r.stdout and "simulators stopped" in r.stdout


def test_jupyter_services_run_jupyter_lab_on_the_mounted_notebooks(capsys):
    from hftsig.cli import main

    for name in ("jupyter-tick", "jupyter-live"):
        assert main(command(name) + ["--print-command"]) == 0
        out = capsys.readouterr().out
        assert out.split()[:2] == ["jupyter", "lab"]
        assert "--notebook-dir=/app/notebooks" in out and "--ip=0.0.0.0" in out
        assert "./notebooks:/app/notebooks" in SERVICES[name]["volumes"]


def _record_natively(name, tmp_path, extra_env=None):
    """Run a recorder service's command with /data replaced by a temporary folder."""
    cmd = [c.replace("/data", str(tmp_path)) for c in command(name)]
    env = dict(service_env(name), HFTSIG_SYMBOLS="ETH-BTC,BTC-USDT", **(extra_env or {}))
    r = run_hftsig(cmd + ["--seconds", "2", "--flush-interval", "0.2"], env=env)
    assert r.returncode == 0, r.stderr
    return r, Path(cmd[1])


def test_tick_recorder_service_runs_natively(tmp_path):
    from hftsig.recorder import read_ticks

    r, out = _record_natively("recorder-tick", tmp_path)
    ticks = read_ticks(out)
    assert len(ticks) > 0
    assert set(ticks["exchange"].tolist()) == {1, 2, 3, 4}  # all four feeds recorded
    assert f"recorded {len(ticks):,} ticks" in r.stdout


def test_live_recorder_service_runs_natively_against_loopback_endpoints(tmp_path):
    """The notick recorder is the live configuration; its endpoints are pointed at the
    simulators through the environment (tests never reach the internet)."""
    from hftsig.recorder import read_ticks
    from hftsig.simulator import SimulatedExchanges

    with SimulatedExchanges(["ETH-BTC", "BTC-USDT"], seed=5) as sim:
        env = {}
        for ex in ("binance", "kraken", "coinbase", "coingecko"):
            for key, url in sim.connector_kwargs(ex).items():
                if url:
                    env[f"HFTSIG_{ex.upper()}_{key.upper()}"] = url
        r, out = _record_natively("recorder-live", tmp_path, env)
    ticks = read_ticks(out)
    assert {1, 2, 3} <= set(ticks["exchange"].tolist())
