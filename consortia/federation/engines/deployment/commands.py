"""The exact ``flower-superlink`` / ``flower-supernode`` / ``flwr`` command lines for a federation.

Flower 1.42 serves all of a SuperLink's APIs (Fleet for SuperNodes, Control for ``flwr``,
ServerAppIo for the ServerApp process) on one HTTP port (``--host``/``--port``); each SuperNode
has its own port for its ClientApp processes. ``--disable-runtime-dependency-installation``
runs the apps in this Python environment instead of building one per run from
``[project].dependencies``. TLS is on unless ``insecure`` is asked for explicitly.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from consortia.errors import ConfigError


def executable(name: str) -> str:
    """A Flower console script, preferring the one beside this Python (the same venv)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"'{name}' not found; install Flower (pip install 'flwr>=1.42,<1.43')")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """Paths of the TLS material (see ``consortia.federation.engines.deployment.certs``)."""

    ca_cert: Path
    server_cert: Path | None = None
    server_key: Path | None = None

    @classmethod
    def from_folder(cls, folder: str | Path) -> Tls:
        folder = Path(folder)
        files = (folder / "ca.crt", folder / "superlink.crt", folder / "superlink.key")
        tls = cls(*files)
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise ConfigError(
                f"{missing[0]} is missing; create local certificates with `consortia serve certs {folder}`"
            )
        return tls


def superlink_command(
    *,
    host: str = "127.0.0.1",
    port: int = 9093,
    tls: Tls | None,
    database: str | Path | None = None,
    node_auth: bool = False,
) -> list[str]:
    argv = [executable("flower-superlink"), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]  # fmt: skip
    if tls is None:
        argv.append("--insecure")
    else:
        argv += ["--ssl-ca-certfile", str(tls.ca_cert), "--ssl-certfile", str(tls.server_cert),
                 "--ssl-keyfile", str(tls.server_key)]  # fmt: skip
    if database is not None:
        argv += ["--database", str(database)]
    if node_auth:
        argv.append("--enable-supernode-auth")
    return argv


def supernode_command(
    *,
    superlink: str,
    data: str | Path,
    port: int,
    tls: Tls | None,
    auth_key: str | Path | None = None,
    host: str = "127.0.0.1",
    max_retries: int | None = None,
    warm: bool = False,
    node_config: dict[str, bool | int | str] | None = None,
) -> list[str]:
    """A SuperNode for one institution; its node config names only its own file.

    ``warm``: Consortia's launcher (``node.py``: Flower's SuperNode with one warm ClientApp
    process and a prompt poll) instead of the plain ``flower-supernode``. ``node_config``:
    further entries the institution sets for itself (e.g. ``{"local-baseline": True}``)."""
    data = Path(data).resolve()
    if not data.is_file():
        raise ConfigError(f"--data {data}: no such file")
    if '"' in str(data):
        raise ConfigError(f"--data {data}: the path may not contain double quotes")
    entries: dict[str, bool | int | str] = {"data-path": str(data), **(node_config or {})}
    for key, value in entries.items():
        if not CONNECTION_NAME.fullmatch(key) or '"' in str(value):
            raise ConfigError(f"node config {key}={value!r}: keys of letters, digits, '_' and '-'; no double quotes")
    start = [sys.executable, "-m", NODE_MODULE] if warm else [executable("flower-supernode")]
    argv = [*start, "--superlink", superlink, "--host", host, "--port", str(port),
            "--node-config", " ".join(f"{k}={_toml_value(v)}" for k, v in entries.items())]  # fmt: skip
    if tls is None:
        argv.append("--insecure")
    else:
        argv += ["--root-certificates", str(tls.ca_cert)]
    if auth_key is not None:
        argv += ["--auth-supernode-private-key", str(auth_key)]
    if max_retries is not None:
        argv += ["--max-retries", str(max_retries)]
    return argv


#: Consortia's SuperNode launcher (a warm ClientApp process, prompt polling)
NODE_MODULE = "consortia.federation.engines.deployment.node"

CONNECTION_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _toml_value(value: bool | int | str) -> str:
    """A node-config value as Flower parses it (``key=value`` pairs, TOML values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else f'"{value}"'


def check_connection_name(name: str) -> str:
    """A connection name is a TOML bare key (``[superlink.NAME]``), so nothing can break out of it."""
    if not CONNECTION_NAME.fullmatch(name):
        raise ConfigError(f"connection name {name!r}: use letters, digits, '_' and '-' only")
    return name


def connection_toml(name: str, address: str, tls: Tls | None) -> str:
    """A ``[superlink.NAME]`` entry for ``$FLWR_HOME/config.toml`` (read by ``flwr run``);
    values are written by ``tomli_w``, so quotes or backslashes in paths stay values."""
    entry: dict[str, object] = {"address": address}
    if tls is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(tls.ca_cert)
    return tomli_w.dumps({"superlink": {check_connection_name(name): entry}})


def write_connection(flwr_home: str | Path, name: str, address: str, tls: Tls | None) -> Path:
    """Add or replace the ``[superlink.NAME]`` entry of ``$FLWR_HOME/config.toml``.

    Only that section is touched (as text), so the rest of a user's Flower config survives.
    Commands then name the connection explicitly; a default is set only in a new file.
    """
    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    entry = connection_toml(name, address, tls)
    if not path.is_file():
        path.write_text(tomli_w.dumps({"superlink": {"default": name}}) + "\n" + entry)
        return path
    text = path.read_text()
    section = re.compile(rf"^\[superlink\.{re.escape(name)}\]\n(?:(?!\[).*\n?)*", re.MULTILINE)
    if section.search(text):
        text = section.sub(lambda _: entry + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + entry
    path.write_text(text)
    return path


def control_client(address: str, tls: Tls | None) -> Any:
    """A client of the SuperLink's Control API, made as ``flwr ls`` makes its own (same headers;
    no account login: a local federation has none), for asking a run's status in-process."""
    from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
    from flwr.supercore.control import ControlHttpClient
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

    return ControlHttpClient.from_server_address(
        server_address=address,
        insecure=tls is None,
        root_certificates=None if tls is None else Path(tls.ca_cert).read_bytes(),
        interceptors=[CliClientHttpInterceptor(), RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
    )


def deployment_env(base: dict[str, str] | None = None, flwr_home: str | Path | None = None) -> dict[str, str]:
    """Environment for Flower's processes: this venv's scripts first on PATH (the SuperLink and
    SuperNodes start ``flower-superexec`` by name), and ``FLWR_HOME`` when given."""
    import os

    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env
