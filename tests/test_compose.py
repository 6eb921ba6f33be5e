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

from hftsig.app.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
# the services running the hftsig image (the others, redis, run a stock image)
HFTSIG_SERVICES = sorted(n for n, v in SERVICES.items() if v.get("build") == ".")
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


def command(name, env=None):
    svc = SERVICES[name]
    cmd = svc.get("command")
    assert isinstance(cmd, list), f"{name}: command must be a list (exec form)"
    return [interpolate(c, env) for c in cmd]


def service_env(name):
    return {k: interpolate(str(v)) for k, v in SERVICES[name].get("environment", {}).items()}


def profile(name):
    return sorted(s for s, v in SERVICES.items() if name in v.get("profiles", []))


def test_profiles_hold_the_right_services():
    assert set(profile("tick")) == {"redis", "simulator", "publisher-tick", "recorder-tick",
                                    "jupyter-tick"}
    assert set(profile("notick")) == {"redis", "publisher-live", "recorder-live",
                                      "jupyter-live"}
    for name, svc in SERVICES.items():
        assert svc.get("profiles"), f"{name} would start outside the profiles"
    assert set(SERVICES) - set(HFTSIG_SERVICES) == {"redis"}
    assert (ROOT / "Dockerfile").is_file()
    assert entrypoint() == ["hftsig"]


def test_every_command_parses_as_an_hftsig_command():
    parser = build_parser()
    for name in HFTSIG_SERVICES:
        args = parser.parse_args(command(name))
        assert callable(args.func), name
    tick, live = command("recorder-tick"), command("recorder-live")
    assert tick[0] == live[0] == "record"
    assert command("simulator")[0] == "simulate"
    # the connectors publish in one container; the recorders consume from redis
    bus = "redis://redis:6379/0"
    for name, simulate in (("publisher-tick", True), ("publisher-live", False)):
        args = parser.parse_args(command(name))
        assert (args.command, args.publish, args.simulate, args.view) == ("run", bus, simulate,
                                                                           False)
    for name in ("recorder-tick", "recorder-live"):
        args = parser.parse_args(command(name))
        assert args.from_url == bus and args.group == "recorder", name


def test_redis_service_persists_and_everything_waits_for_it():
    redis = SERVICES["redis"]
    cmd = redis["command"]
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "everysec"
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in COMPOSE["volumes"]
    for name in HFTSIG_SERVICES:
        if name == "simulator":
            continue
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


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
         "from hftsig.app.cli import build_parser as b; a=b().parse_args(['record','x']);"
         "print(','.join(a.symbols), ','.join(a.exchanges))"],
        env=dict(os.environ, HFTSIG_SYMBOLS="SOL-USDT,ETH-BTC", HFTSIG_EXCHANGES="kraken",
                 PYTHONPATH=str(ROOT)), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SOL-USDT,ETH-BTC", "kraken"]


def run_hftsig(args, env=None, timeout=120):
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "hftsig", *args], env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("name", HFTSIG_SERVICES)
def test_service_help_runs(name, capsys):
    from hftsig.app.cli import main

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
    from hftsig.app.cli import main

    for name in ("jupyter-tick", "jupyter-live"):
        assert main(command(name) + ["--print-command"]) == 0
        out = capsys.readouterr().out
        assert out.split()[:2] == ["jupyter", "lab"]
        assert "--notebook-dir=/app/notebooks" in out and "--ip=0.0.0.0" in out
        assert "./notebooks:/app/notebooks" in SERVICES[name]["volumes"]


def _publish_and_record_natively(profile_name, tmp_path, bus_url, extra_env=None):
    """Run a profile's publisher, then its recorder, natively: /data replaced by a
    temporary folder, the redis service by a real redis-server on a unix socket."""
    bus = {"HFTSIG_BUS_URL": bus_url}
    env = dict(service_env(f"publisher-{profile_name}"), HFTSIG_SYMBOLS="ETH-BTC,BTC-USDT",
               **bus, **(extra_env or {}))
    pub = run_hftsig(command(f"publisher-{profile_name}", bus) + ["--seconds", "2"], env=env)
    assert pub.returncode == 0, pub.stderr
    assert "published" in pub.stdout and "(dropped 0, unsent 0)" in pub.stdout
    cmd = [c.replace("/data", str(tmp_path)) for c in command(f"recorder-{profile_name}", bus)]
    r = run_hftsig(cmd + ["--seconds", "2", "--flush-interval", "0.2"], env=env)
    assert r.returncode == 0, r.stderr
    return r, Path(cmd[1])


def test_tick_profile_publishes_and_records_natively(tmp_path, redis_url):
    from hftsig.market.recorder import read_ticks

    r, out = _publish_and_record_natively("tick", tmp_path, redis_url)
    ticks = read_ticks(out)
    assert len(ticks) > 0
    assert set(ticks["exchange"].tolist()) == {1, 2, 3, 4}  # all four feeds recorded
    assert f"recorded {len(ticks):,} ticks" in r.stdout


def test_live_profile_publishes_and_records_natively_against_loopback_endpoints(tmp_path,
                                                                             redis_url):
    """The notick publisher is the live configuration; its endpoints are pointed at the
    simulators through the environment (tests never reach the internet)."""
    from hftsig.market.recorder import read_ticks
    from hftsig.simulator import SimulatedExchanges

    with SimulatedExchanges(["ETH-BTC", "BTC-USDT"], seed=5) as sim:
        env = {}
        for ex in ("binance", "kraken", "coinbase", "coingecko"):
            for key, url in sim.connector_kwargs(ex).items():
                if url:
                    env[f"HFTSIG_{ex.upper()}_{key.upper()}"] = url
        r, out = _publish_and_record_natively("live", tmp_path, redis_url, env)
    ticks = read_ticks(out)
    assert {1, 2, 3} <= set(ticks["exchange"].tolist())
