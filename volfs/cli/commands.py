"""The ``volfs`` command: run the daemon, and drive it as kubectl drives a cluster.

Exit codes: 0 done; 1 the daemon could not do it (not running, not found, a
volume failed to set up); 2 the input was refused (a bad manifest, an invalid
object, a change to a created pod's spec, bad arguments).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml

import volfs
from volfs.api import ApiObject, ManifestError, Pod, load_manifests
from volfs.cli.client import ApiError, Client, ClientError
from volfs.cli.describe import describe_pod
from volfs.cli.printers import dump, pods_table
from volfs.config import (
    DEFAULT_DOCKER_PLUGIN,
    DEFAULT_ROOT,
    DEFAULT_STATE_DIR,
    DOCKER_PLUGIN_DIR,
    DaemonConfig,
    default_socket,
    parse_kube_api,
)
from volfs.runtime import RUN_ANNOTATION

EXIT_FAILED = 1
EXIT_REFUSED = 2
DEFAULT_NAMESPACE = "default"
POD_WORDS = ("pod", "pods", "po")

F = TypeVar("F", bound=Callable[..., Any])


class Failure(Exception):
    """An expected failure: print ``error: <message>`` and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _reports_errors(command: F) -> F:
    """Expected failures end the command with one line on stderr, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Failure as exc:
            _fail(str(exc), exc.code)
        except ClientError as exc:
            _fail(str(exc), EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


def _socket_option(command: F) -> F:
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="The daemon's control socket [default: $VOLFS_SOCKET or "
        f"{DEFAULT_STATE_DIR}/volfs.sock].",
    )(command)


def _namespace_option(command: F) -> F:
    return click.option(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, show_default=True, help="The namespace."
    )(command)


def _pod_word(value: str) -> None:
    if value not in POD_WORDS:
        raise click.BadParameter(f'unknown resource type "{value}"; volfs serves only pods')


def _client(socket_path: Path | None) -> Client:
    return Client(socket_path or default_socket())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(volfs.__version__, prog_name="volfs")
def main() -> None:
    """volfs: the volumes a kubelet gives a pod (EmptyDir, HostPath, NFS), for containers."""


_CONFIG_KEYS = {"root": "root", "state-dir": "state_dir", "socket": "socket_path",
                "hook-timeout": "hook_timeout", "allow-host-path": "allow_host_path",
                "debug": "debug", "docker-host": "docker_host", "docker-plugin": "docker_plugin",
                "kube-api": "kube_api"}


def _load_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``--config FILE``: YAML whose keys are serve's flags; flags given still win."""
    if value is None:
        return
    try:
        settings = yaml.safe_load(value.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{value}: {str(exc).splitlines()[0]}") from None
    if not isinstance(settings, dict):
        raise click.BadParameter(f"{value}: must be a mapping of serve's flags to values")
    defaults = {}
    for key, setting in settings.items():
        name = _CONFIG_KEYS.get(str(key).replace("_", "-"))
        if name is None:
            raise click.BadParameter(
                f"{value}: unknown setting {key!r} (known: {', '.join(_CONFIG_KEYS)})")
        defaults[name] = setting
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _plugin_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise click.BadParameter(f"{value!r}: letters, digits, '_', '.' and '-' only")
    return value


@main.command()
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="A YAML file of serve's settings (root, state-dir, allow-host-path, ...).",
)
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_ROOT,
    show_default=True,
    help="Where the volume tree is mounted (pods/<uid>/volumes/...).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the daemon keeps its database, disk EmptyDirs, hooks and socket.",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The control socket [default: <state-dir>/volfs.sock].",
)
@click.option(
    "--hook-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DaemonConfig.hook_timeout,
    show_default=True,
    help="Seconds a create/delete hook may run before it is killed.",
)
@click.option(
    "--allow-host-path",
    multiple=True,
    metavar="PREFIX[:ro]",
    help="Allow hostPath volumes under PREFIX (whole path components, symlinks resolved); "
    "':ro' serves them read-only. Repeatable. Default: none allowed.",
)
@click.option(
    "--docker-host",
    default=None,
    metavar="URL",
    help="The Docker engine 'volfs run' starts containers on "
    "[default: $DOCKER_HOST or unix:///run/docker.sock].",
)
@click.option(
    "--docker-plugin",
    default=DEFAULT_DOCKER_PLUGIN,
    show_default=True,
    metavar="NAME",
    callback=_plugin_name,
    help=f"Serve Docker's volume-plugin protocol on {DOCKER_PLUGIN_DIR}/NAME.sock "
    "(docker volume create -d NAME); '' serves none.",
)
@click.option(
    "--kube-api",
    default=None,
    metavar="HOST:PORT",
    callback=lambda ctx, param, value: _kube_api(value),
    help="Also serve the Kubernetes API to kubectl on this loopback address "
    "(127.0.0.1:PORT or [::1]:PORT; PORT 0 picks one), with a bearer token; "
    "'volfs kubeconfig' prints a kubeconfig for it.",
)
@click.option("--debug", is_flag=True, help="Log debug detail.")
def serve(
    root: Path, state_dir: Path, socket_path: Path | None, hook_timeout: float,
    allow_host_path: tuple[str, ...], docker_host: str | None, docker_plugin: str, debug: bool,
    kube_api: tuple[str, int] | None,
) -> None:
    """Run the daemon: mount the volume tree and serve the control API."""
    config = DaemonConfig(
        root=root,
        state_dir=state_dir,
        socket=socket_path,
        hook_timeout=hook_timeout,
        allow_host_paths=tuple(allow_host_path),
        debug=debug,
        kube_api=kube_api,
        docker_host=docker_host or None,
        docker_plugin=docker_plugin,
    )
    from volfs.daemon import run

    sys.exit(run(config))


def _kube_api(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    try:
        return parse_kube_api(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@_socket_option
@_reports_errors
def kubeconfig(socket_path: Path | None) -> None:
    """Print a kubeconfig for kubectl: the daemon's --kube-api address and its token.

    \b
      volfs kubeconfig > ~/.kube/volfs.conf
      kubectl --kubeconfig ~/.kube/volfs.conf get pods
    """
    with _client(socket_path) as client:
        config = client.kubeconfig()
    click.echo(yaml.safe_dump(config, sort_keys=False, default_flow_style=False).rstrip("\n"))


@dataclass
class _Manifest:
    source: str
    objects: list[ApiObject]

    @property
    def pods(self) -> list[Pod]:
        return [obj for obj in self.objects if isinstance(obj, Pod)]


@main.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="A manifest file (YAML, several documents allowed); '-' reads stdin. Repeatable.",
)
@_socket_option
@_reports_errors
def apply(files: tuple[str, ...], socket_path: Path | None) -> None:
    """Create the pods in manifest files.

    A pod that already exists with the same spec is left unchanged. Every file is
    read and checked before anything is sent: a bad manifest creates nothing.
    """
    manifests = [_load(name) for name in files]
    if not any(m.objects for m in manifests):
        raise Failure("no objects passed to apply", EXIT_REFUSED)
    worst = 0
    with _client(socket_path) as client:
        for manifest in manifests:
            for obj in manifest.objects:
                try:
                    if not isinstance(obj, Pod):
                        raise Failure(f"{obj.kind} objects are not served yet", EXIT_REFUSED)
                    click.echo(_apply_pod(client, obj))
                except Failure as exc:
                    click.echo(f"error: {manifest.source}: {exc}", err=True)
                    worst = max(worst, exc.code)
    if worst:
        sys.exit(worst)


@main.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="A manifest file (YAML, several documents allowed); '-' reads stdin. Repeatable.",
)
@click.option("--image", default=None, help="Run every container with this image instead.")
@_socket_option
@_reports_errors
def run(files: tuple[str, ...], image: str | None, socket_path: Path | None) -> None:
    """Create the pods in manifest files and run their containers.

    The daemon sets each pod's volumes up, then starts every container on its
    Docker engine (see 'volfs serve --docker-host') with the pod's volumeMounts as
    bind mounts; a container that fails to start rolls the pod back. 'volfs delete
    pod' stops and removes them first. The pods are annotated volfs.io/run=true.
    """
    manifests = [_load(name) for name in files]
    if not any(m.pods for m in manifests):
        raise Failure("no objects passed to run", EXIT_REFUSED)
    worst = 0
    with _client(socket_path) as client:
        for manifest in manifests:
            for pod in manifest.pods:
                try:
                    click.echo(_apply_pod(client, _to_run(pod, image), run=True))
                except Failure as exc:
                    click.echo(f"error: {manifest.source}: {exc}", err=True)
                    worst = max(worst, exc.code)
    if worst:
        sys.exit(worst)


def _to_run(pod: Pod, image: str | None) -> Pod:
    """``pod`` annotated to have its containers run, with every image ``image`` if given."""
    annotations = {**pod.metadata.annotations, RUN_ANNOTATION: "true"}
    containers = [c.model_copy(update={"image": image}) if image else c
                  for c in pod.spec.containers]
    return pod.model_copy(update={
        "metadata": pod.metadata.model_copy(update={"annotations": annotations}),
        "spec": pod.spec.model_copy(update={"containers": containers}),
    })


def _load(name: str) -> _Manifest:
    source = "<stdin>" if name == "-" else name
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8") as file:
                text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise Failure(f"{source}: {detail}", EXIT_REFUSED) from exc
    try:
        return _Manifest(source, load_manifests(text, source))
    except ManifestError as exc:
        raise Failure(str(exc), EXIT_REFUSED) from exc


def _apply_pod(client: Client, pod: Pod, run: bool = False) -> str:
    """Create one pod; the line to print. Raises Failure (message without the file)."""
    obj = pod.to_k8s()
    name = pod.metadata.name
    namespace = pod.metadata.namespace or DEFAULT_NAMESPACE
    try:
        created = client.create_pod(namespace, obj)
        if run:
            statuses = (created.get("status") or {}).get("containerStatuses") or []
            running = sum(1 for s in statuses if "running" in (s.get("state") or {}))
            return f"pod/{name} created ({running}/{len(statuses)} containers running)"
        return f"pod/{name} created"
    except ApiError as exc:
        if exc.code == 409 and exc.reason == "AlreadyExists":
            stored = client.get_pod(namespace, name)
            stored_run = ((stored.get("metadata") or {}).get("annotations") or {}).get(
                RUN_ANNOTATION) == "true"
            if run and not stored_run:
                raise Failure(f'pod "{name}" already exists and its containers are not run '
                              "by volfs; delete the pod first", EXIT_REFUSED) from exc
            if stored.get("spec") == json.loads(json.dumps(obj.get("spec"))):
                return f"pod/{name} unchanged"
            raise Failure(
                f'pod "{name}": spec is immutable once created; delete the pod first',
                EXIT_REFUSED,
            ) from exc
        if exc.code == 422:
            raise Failure(str(exc), EXIT_REFUSED) from exc
        raise Failure(f'pod "{name}": {exc}', EXIT_FAILED) from exc


@main.command()
@click.argument("resource")
@click.argument("name")
@_namespace_option
@_socket_option
@_reports_errors
def delete(resource: str, name: str, namespace: str, socket_path: Path | None) -> None:
    """Delete a pod and tear its volumes down.

    Runs the pod's delete hooks; its EmptyDir data is gone for good, data on NFS stays.
    """
    _pod_word(resource)
    with _client(socket_path) as client:
        _, warnings = client.delete_pod(namespace, name)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f'pod "{name}" deleted')


@main.command()
@click.argument("resource")
@click.argument("name", required=False)
@_namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List pods of every namespace.")
@click.option("-o", "--output", type=click.Choice(["json", "yaml", "wide"]), help="Output format.")
@_socket_option
@_reports_errors
def get(
    resource: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str | None,
    socket_path: Path | None,
) -> None:
    """List pods ('get pods'), or show one ('get pod NAME')."""
    _pod_word(resource)
    if name is not None and all_namespaces:
        raise Failure("a pod name cannot be combined with --all-namespaces", EXIT_REFUSED)
    with _client(socket_path) as client:
        if name is not None:
            pod = client.get_pod(namespace, name)
            if output in ("json", "yaml"):
                click.echo(dump(pod, output))
            else:
                click.echo(_pods_table([pod], all_namespaces=False, wide=output == "wide"))
            return
        pod_list = client.list_pods(None if all_namespaces else namespace)
    if output in ("json", "yaml"):
        click.echo(dump(pod_list, output))
        return
    items = pod_list.get("items") or []
    if not items:
        where = "" if all_namespaces else f" in {namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    click.echo(_pods_table(items, all_namespaces=all_namespaces, wide=output == "wide"))


def _pods_table(pods: list[dict[str, Any]], *, all_namespaces: bool, wide: bool) -> str:
    return pods_table(pods, datetime.now(UTC), all_namespaces=all_namespaces, wide=wide)


@main.command()
@click.argument("resource")
@click.argument("name")
@_namespace_option
@_socket_option
@_reports_errors
def describe(resource: str, name: str, namespace: str, socket_path: Path | None) -> None:
    """Show a pod in detail.

    Its containers' mounts, and per volume its source, host path and usage.
    """
    _pod_word(resource)
    with _client(socket_path) as client:
        pod = client.get_pod(namespace, name)
    click.echo(describe_pod(pod))
