"""`consortia serve ...`: thin wrappers over flower-superlink / flower-supernode / flwr run.

Each command prints the exact Flower command line it runs, so nothing is hidden; ``--dry-run``
prints it and stops. TLS is on unless ``--insecure`` is given.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from consortia.cli.output import friendly_errors
from consortia.errors import ConfigError

serve_app = typer.Typer(help="Run a real federation: SuperLink, SuperNodes, certificates, runs.", no_args_is_help=True)
console = Console()
DEFAULT_CONNECTION = "consortia"

Certs = Annotated[Path | None, typer.Option(help="folder from `consortia serve certs` (TLS)")]
Insecure = Annotated[bool, typer.Option(help="no TLS (only for trying things out on one machine)")]
DryRun = Annotated[bool, typer.Option(help="print the command instead of running it")]


def _errors(fn):
    return friendly_errors(fn)


def _tls(certs: Path | None, insecure: bool, *, server: bool):
    from consortia.federation.engines.deployment.commands import Tls

    if insecure:
        if certs is not None:
            raise ConfigError("use either --certs or --insecure, not both")
        return None
    if certs is None:
        raise ConfigError("TLS is on by default: pass --certs DIR (see `consortia serve certs`) or --insecure")
    certs = Path(certs).resolve()
    if server:
        return Tls.from_folder(certs)
    ca = certs / "ca.crt"
    if not ca.is_file():
        raise ConfigError(f"{ca} is missing; copy the consortium's ca.crt into {certs}")
    return Tls(ca)


def _exec(argv: list[str], dry_run: bool) -> None:
    from consortia.federation.engines.deployment.commands import deployment_env

    console.print(" ".join(_quote(a) for a in argv), highlight=False, soft_wrap=True)
    if dry_run:
        return
    os.execvpe(argv[0], argv, deployment_env())  # the Flower process replaces this one


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in ' "') else arg


@serve_app.command()
@_errors
def certs(
    folder: Annotated[Path, typer.Argument(help="where to write ca.crt, superlink.crt/.key and node keys")],
    host: Annotated[list[str] | None, typer.Option(help="SuperLink host name or IP (repeatable)")] = None,
    node: Annotated[list[str] | None, typer.Option(help="SuperNode name to make an auth key for (repeatable)")] = None,
    he: Annotated[
        bool, typer.Option("--he", help="also the consortium's HE key: he-secret.ctx (institutions), he-public.ctx")
    ] = False,
) -> None:
    """A local CA, a SuperLink certificate and SuperNode key pairs, for trying a federation.

    With --he also the CKKS key for --secure-agg he: copy he-secret.ctx to every institution (node
    config he-key=PATH); the server needs nothing (it gets the public context from the nodes)."""
    from consortia.federation.engines.deployment.certs import check_node_name, generate_node_key, generate_tls

    for name in node or []:  # refuse a bad name before writing anything
        check_node_name(name)
    files = generate_tls(folder, hosts=tuple(host or ("localhost", "127.0.0.1")))
    console.print(f"CA {files.ca_cert}; SuperLink certificate {files.server_cert} (key {files.server_key})")
    for name in node or []:
        private, public = generate_node_key(folder, name)
        console.print(f"node '{name}': private key {private}, public key {public}")
    if he:
        from consortia.privacy.he import write_key_pair

        secret, public = write_key_pair(folder)
        console.print(f"HE key: {secret} (every institution, node config he-key={secret}); public context {public}")


@serve_app.command()
@_errors
def link(
    certs: Certs = None,
    insecure: Insecure = False,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0 for other machines)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the SuperLink's one port (SuperNodes, flwr, ServerApp)")] = 9093,
    auth: Annotated[
        bool, typer.Option(help="SuperNode authentication (register keys with `flwr supernode register`)")
    ] = True,
    database: Annotated[Path | None, typer.Option(help="SQLite file for the SuperLink's state")] = None,
    dry_run: DryRun = False,
) -> None:
    """Start the SuperLink (wraps flower-superlink)."""
    from consortia.federation.engines.deployment.commands import superlink_command

    tls = _tls(certs, insecure, server=True)
    _exec(superlink_command(host=host, port=port, tls=tls, database=database, node_auth=auth), dry_run)


@serve_app.command()
@_errors
def node(
    data: Annotated[Path, typer.Option(help="this institution's CSV/Parquet file (only this node reads it)")],
    superlink: Annotated[str, typer.Option("--link", help="SuperLink address host:port")] = "127.0.0.1:9093",
    certs: Certs = None,
    insecure: Insecure = False,
    key: Annotated[Path | None, typer.Option(help="this node's private key (SuperNode authentication)")] = None,
    port: Annotated[int, typer.Option(help="local port for this node's ClientApp processes (one per node)")] = 9094,
    warm: Annotated[
        bool, typer.Option(help="one warm ClientApp process and a prompt poll (docs/deployment.md); --no-warm: plain")
    ] = True,
    he_key: Annotated[
        Path | None, typer.Option(help="he-secret.ctx from `consortia serve certs --he` (for --secure-agg he)")
    ] = None,
    dry_run: DryRun = False,
) -> None:
    """Start one institution's SuperNode (wraps flower-supernode)."""
    from consortia.federation.engines.deployment.commands import supernode_command

    tls = _tls(certs, insecure, server=False)
    if key is not None and not key.is_file():
        raise ConfigError(f"--key {key}: no such file")
    node_config: dict[str, bool | int | str] = {}
    if he_key is not None:
        from consortia.federation.secure.he import HE_KEY
        from consortia.privacy.he import read_secret_context

        read_secret_context(he_key)  # a missing file or a public context: one line now, not at the first round
        node_config[HE_KEY] = str(he_key.resolve())
    command = supernode_command(
        superlink=superlink, data=data, port=port, tls=tls, auth_key=key, warm=warm, node_config=node_config
    )
    _exec(command, dry_run)


@serve_app.command()
@_errors
def connect(
    superlink: Annotated[str, typer.Option("--link", help="SuperLink address host:port")] = "127.0.0.1:9093",
    certs: Certs = None,
    insecure: Insecure = False,
    name: Annotated[str, typer.Option(help="connection name for flwr commands")] = DEFAULT_CONNECTION,
) -> None:
    """Save the SuperLink connection in $FLWR_HOME/config.toml (for `flwr supernode register ...`)."""
    from consortia.federation.engines.deployment.commands import deployment_env, write_connection

    home = Path(deployment_env().get("FLWR_HOME", Path.home() / ".flwr"))
    path = write_connection(home, name, superlink, _tls(certs, insecure, server=False))
    console.print(f"connection '{name}' -> {superlink} saved in {path}", highlight=False)


@serve_app.command()
@_errors
def submit(
    vertical: Annotated[str, typer.Argument(help="healthcare, finance or manufacturing")],
    institutions: Annotated[int, typer.Option(help="number of SuperNodes the run waits for")],
    superlink: Annotated[str, typer.Option("--link", help="SuperLink address host:port")] = "127.0.0.1:9093",
    certs: Certs = None,
    insecure: Insecure = False,
    rounds: Annotated[int, typer.Option()] = 20,
    local_epochs: Annotated[int, typer.Option()] = 1,
    model: Annotated[str, typer.Option()] = "logistic",
    strategy: Annotated[str, typer.Option()] = "fedavg",
    min_institutions: Annotated[int | None, typer.Option(help="go on when nodes drop out, down to this many")] = None,
    map_path: Annotated[Path | None, typer.Option("--map", help="mapping.yaml for the nodes' files")] = None,
    target: Annotated[str | None, typer.Option(help="target column in the nodes' files")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="run folder on the SuperLink's machine")] = None,
    seed: Annotated[int, typer.Option()] = 42,
    stream: Annotated[bool, typer.Option(help="follow the run's log")] = True,
    dry_run: DryRun = False,
) -> None:
    """Submit a run to a SuperLink (wraps `flwr run` with Consortia's app and your settings)."""
    from consortia.config import ExperimentConfig
    from consortia.data.mapping import DataMapping
    from consortia.federation.engines.deployment import APP_DIR, run_config_toml
    from consortia.federation.engines.deployment.commands import deployment_env, executable, write_connection
    from consortia.runs.folder import default_run_dir

    tls = _tls(certs, insecure, server=False)
    data: dict = {}
    if map_path is not None:
        data = {"mapping": DataMapping.from_file(map_path).to_json(), "mapping_source": str(map_path.resolve())}
    if target:
        data["target"] = target
    config = ExperimentConfig.build(
        vertical=vertical, institutions=institutions, rounds=rounds, local_epochs=local_epochs, model=model,
        strategy=strategy, min_institutions=min_institutions, seed=seed, data=data,
        run_dir=str((run_dir or default_run_dir(vertical)).resolve()),
    )  # fmt: skip
    env = deployment_env()
    home = Path(env.get("FLWR_HOME", Path.home() / ".flwr"))
    run_config = home / "consortia-run-config.toml"
    argv = [executable("flwr"), "run", str(APP_DIR), DEFAULT_CONNECTION, "--run-config", str(run_config)]
    if stream:
        argv.append("--stream")
    console.print(" ".join(argv), highlight=False, soft_wrap=True)
    if dry_run:
        console.print(json.dumps(json.loads(config.model_dump_json()), indent=2), highlight=False)
        return
    write_connection(home, DEFAULT_CONNECTION, superlink, tls)
    run_config.write_text(run_config_toml(config))
    raise typer.Exit(subprocess.call(argv, env=env))
