"""The ``volfs`` command: run the daemon, and drive it as kubectl drives a cluster.

Exit codes: 0 done; 1 the daemon could not do it (not running, not found, a
volume failed to set up); 2 the input was refused (a bad manifest, an invalid
object, a change to a created pod's spec, bad arguments).
"""

from __future__ import annotations

import functools
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
from volfs.api.workloads import Workload
from volfs.cli import settings
from volfs.cli.applying import (
    EXIT_FAILED,
    EXIT_REFUSED,
    Failure,
    Target,
    apply_object,
    delete_object,
    in_apply_order,
    in_delete_order,
    wait_ready,
)
from volfs.cli.client import ApiError, Client, ClientError
from volfs.cli.describe import (
    describe_claim,
    describe_class,
    describe_pod,
    describe_volume,
    describe_workload,
)
from volfs.cli.kinds import (
    EVENT,
    KINDS,
    PERSISTENT_VOLUME,
    PERSISTENT_VOLUME_CLAIM,
    POD,
    STORAGE_CLASS,
    WORKLOADS,
    Kind,
    UnknownResource,
    by_kind,
    resolve,
)
from volfs.cli.printers import dump, pods_table, server_table, table_rows
from volfs.cli.progress import ProgressView
from volfs.config import (
    DEFAULT_DOCKER_PLUGIN,
    DEFAULT_ROOT,
    DEFAULT_STATE_DIR,
    DOCKER_PLUGIN_DIR,
    LOG_FORMATS,
    RECOVER_CONTAINERS,
    DaemonConfig,
    default_socket,
)
from volfs.runtime import RUN_ANNOTATION

DEFAULT_NAMESPACE = "default"
# The kinds that can be described and deleted by name (events are only listed).
OBJECT_KINDS = (POD, PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, STORAGE_CLASS, *WORKLOADS)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["EXIT_FAILED", "EXIT_REFUSED", "Failure", "main"]


class _RootPath(click.Path):
    """--root's type. With --keep-connection the root may be a mount whose daemon died
    and that only the daemon being started can answer: a stat there would wait for ever,
    so its checks are left to the daemon."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if ctx is not None and (ctx.params.get("keep_connection")
                                or (ctx.default_map or {}).get("keep_connection")):
            return Path(value)
        return super().convert(value, param, ctx)


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


def _kind(word: str, allowed: tuple[Kind, ...] = KINDS) -> Kind:
    try:
        return resolve(word, allowed)
    except UnknownResource as exc:
        raise click.BadParameter(str(exc)) from None


def _client(socket_path: Path | None) -> Client:
    return Client(socket_path or default_socket())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(volfs.__version__, prog_name="volfs")
def main() -> None:
    """volfs: the volumes a kubelet gives a pod (EmptyDir, HostPath, NFS), for containers."""


@main.command()
@click.option(
    "--config",
    default=None,
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=settings.load_config,
    help=f"A YAML file of serve's settings, keyed by flag name (root, state-dir, ...); flags "
    f"given win [default: ${settings.CONFIG_ENV}, else {settings.DEFAULT_CONFIG_FILE} if it "
    "exists; '' reads none].",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the effective settings (a config file, each line saying where its value came "
    "from) and exit, mounting nothing.",
)
@click.option(
    "--root",
    type=_RootPath(path_type=Path, file_okay=False),
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
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The control socket [default: <state-dir>/volfs.sock].",
)
@click.option(
    "--memory-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where Memory-medium EmptyDirs live; put it on a tmpfs "
    "[default: /dev/shm/volfs-<hash of the state dir>].",
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
    "--tree-group",
    default=None,
    metavar="GROUP",
    callback=settings.checked("tree-group"),
    help="Give this group (a name or a gid) r-x on the tree above the volumes (<root>, "
    "pods, pods/<uid>, ...: mode 0750). Default: root's group, so only root gets through.",
)
@click.option(
    "--kube-api",
    default=None,
    metavar="HOST:PORT",
    callback=settings.checked("kube-api"),
    help="Also serve the Kubernetes API to kubectl on this loopback address "
    "(127.0.0.1:PORT or [::1]:PORT; PORT 0 picks one), with a bearer token; "
    "'volfs kubeconfig' prints a kubeconfig for it. Default: not served.",
)
@click.option(
    "--metrics",
    default=None,
    metavar="HOST:PORT",
    callback=settings.checked("metrics"),
    help="Serve Prometheus metrics at http://HOST:PORT/metrics, on a loopback address "
    "(127.0.0.1:PORT or [::1]:PORT; PORT 0 picks one, written to "
    "<state-dir>/metrics.address). Default: not served.",
)
@click.option(
    "--csi-endpoint",
    default=None,
    metavar="unix:///PATH",
    callback=settings.checked("csi-endpoint"),
    help="Also serve the CSI v1 gRPC services (Identity, Controller, Node) on this unix "
    "socket, as driver volfs.io; its volumes appear under <root>/csi/. Default: not served.",
)
@click.option(
    "--csi-node-id",
    default=None,
    metavar="ID",
    callback=settings.checked("csi-node-id"),
    help="The node id CSI's NodeGetInfo reports [default: this host's name].",
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
    callback=settings.checked("docker-plugin"),
    help="Serve Docker's volume-plugin protocol on <docker-plugin-dir>/NAME.sock "
    "(docker volume create -d NAME); '' serves none.",
)
@click.option(
    "--docker-plugin-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DOCKER_PLUGIN_DIR,
    show_default=True,
    help="Where Docker looks for plugin sockets (a rootless engine: "
    "$XDG_RUNTIME_DIR/docker/plugins).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default=LOG_FORMATS[0],
    show_default=True,
    help="text: one line per event for people; json: one JSON object per line (time, "
    "level, logger, message, and fields such as pod, volume, claim).",
)
@click.option(
    "--recover-containers",
    type=click.Choice(RECOVER_CONTAINERS),
    default=DaemonConfig.recover_containers,
    show_default=True,
    help="At start, restart the running containers that still hold the mount of a daemon "
    "that stopped (they see 'Transport endpoint is not connected'): managed = those of "
    "'volfs run' pods and of volume-plugin volumes; all = also any container binding a "
    "path under --root; none = only warn.",
)
@click.option(
    "--keep-connection",
    is_flag=True,
    is_eager=True,  # before --root, whose check depends on it
    help="Prototype: a keeper process holds the FUSE connection, so a daemon that dies "
    "(kill -9) leaves callers waiting, and the next daemon serves the same mount "
    "instead of mounting anew. Off by default.",
)
@click.option(
    "--writeback-cache",
    is_flag=True,
    help="Let the kernel gather writes in its page cache and send them in large blocks "
    "(4 KiB writes several times faster). Then a write past an EmptyDir's sizeLimit "
    "fails at fsync or close, not at write; HostPath and NFS files bypass the page "
    "cache, and their size as stat shows it may lag changes made outside volfs. Off by "
    "default (README: Writes and the page cache).",
)
@click.option("--debug", is_flag=True, help="Log debug detail.")
@click.pass_context
def serve(ctx: click.Context, print_config: bool, **values: Any) -> None:
    """Run the daemon: mount the volume tree and serve the control API.

    Every option has a config-file key of its own name (see --config and
    docs/options.md).
    """
    if print_config:
        click.echo(settings.render(ctx))
        return
    config = settings.daemon_config(values)
    from volfs.daemon import run

    sys.exit(run(config))


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

    @property
    def workloads(self) -> list[Workload]:
        return [obj for obj in self.objects if isinstance(obj, Workload)]


def _entries(manifests: list[_Manifest]) -> list[tuple[str, Kind, dict[str, Any]]]:
    """Every object of ``manifests``: (its file, its kind, its Kubernetes form)."""
    entries = []
    for manifest in manifests:
        for obj in manifest.objects:
            kind = by_kind(obj.kind)
            if kind is None:  # a kind the manifests parse and the CLI does not know
                raise Failure(f"{manifest.source}: {obj.kind} objects are not served",
                              EXIT_REFUSED)
            entries.append((manifest.source, kind, obj.to_k8s()))
    return entries


_FILES = click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="A manifest file (YAML, several documents allowed); '-' reads stdin. Repeatable.",
)


@main.command()
@_FILES
@click.option("--wait", is_flag=True,
              help="Then wait until every pod applied is Running and every claim Bound.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS", help="How long --wait waits.")
@_socket_option
@_reports_errors
def apply(files: tuple[str, ...], wait: bool, timeout: float, socket_path: Path | None) -> None:
    """Create or update the objects in manifest files.

    Pods, PersistentVolumes, PersistentVolumeClaims and StorageClasses, in any order
    and mix (StorageClasses, volumes and claims are sent before the pods that use
    them). An object that exists is left unchanged when the manifest matches it, and
    else updated (labels, annotations, what its kind lets change). Every file is read
    and checked before anything is sent: a bad manifest creates nothing.

    \b
    With --wait, waits for every pod applied to be Running and every claim Bound
    (a pod whose claim is not bound yet is Pending); on --timeout it prints each
    object still waiting, with its phase and why, and exits 1.
    """
    manifests = [_load(name) for name in files]
    entries = in_apply_order(_entries(manifests), lambda entry: entry[1])
    if not entries:
        raise Failure("no objects passed to apply", EXIT_REFUSED)
    worst = 0
    applied: list[Target] = []
    with _client(socket_path) as client:
        for source, kind, obj in entries:
            try:
                click.echo(apply_object(client, kind, obj))
                applied.append(Target.of(kind, obj))
            except Failure as exc:
                click.echo(f"error: {source}: {exc}", err=True)
                worst = max(worst, exc.code)
        if wait:
            problems = wait_ready(client, applied, timeout)
            for line in problems:
                click.echo(f"error: {line}", err=True)
            if problems:
                worst = max(worst, EXIT_FAILED)
    if worst:
        sys.exit(worst)


@main.command()
@_FILES
@click.option("--image", default=None, help="Run every container with this image instead.")
@_socket_option
@_reports_errors
def run(files: tuple[str, ...], image: str | None, socket_path: Path | None) -> None:
    """Create the pods in manifest files and run their containers.

    The daemon sets each pod's volumes up, then starts every container on its
    Docker engine (see 'volfs serve --docker-host') with the pod's volumeMounts as
    bind mounts; a container that fails to start rolls the pod back. 'volfs delete
    pod' stops and removes them first. The pods are annotated volfs.io/run=true.
    A ReplicationController or StatefulSet is created with that annotation in its pod
    template, so the containers of every replica it makes are run.
    """
    manifests = [_load(name) for name in files]
    if not any(m.pods or m.workloads for m in manifests):
        raise Failure("no objects passed to run", EXIT_REFUSED)
    worst = 0
    with _client(socket_path) as client:
        for manifest in manifests:
            runs: list[tuple[Kind, dict[str, Any], bool]] = [
                (POD, _to_run(pod, image).to_k8s(), True) for pod in manifest.pods]
            runs += [(by_kind(w.kind) or POD, _workload_to_run(w.to_k8s(), image), False)
                     for w in manifest.workloads]
            for kind, obj, is_pod in runs:
                try:
                    click.echo(apply_object(client, kind, obj, run=is_pod))
                except Failure as exc:
                    click.echo(f"error: {manifest.source}: {exc}", err=True)
                    worst = max(worst, exc.code)
    if worst:
        sys.exit(worst)


def _workload_to_run(obj: dict[str, Any], image: str | None) -> dict[str, Any]:
    """A controller or StatefulSet whose pods' containers volfs runs: its template
    annotated (every replica is), with every image ``image`` if given."""
    template = obj["spec"].setdefault("template", {})
    meta = template.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), RUN_ANNOTATION: "true"}
    if image:
        for container in (template.get("spec") or {}).get("containers") or []:
            container["image"] = image
    return obj


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


_OBJECT_WORDS = "pod, pv, pvc, sc, rc or sts"


@main.command()
@click.argument("resource", required=False)
@click.argument("name", required=False)
@click.option("-f", "--filename", "files", multiple=True,
              help="Delete every object of this manifest file ('-' reads stdin). Repeatable.")
@click.option("--grace-period", type=int, default=-1, show_default=True, metavar="SECONDS",
              help="Seconds a pod's containers get to stop after SIGTERM before they are "
              "killed; negative: the pod's terminationGracePeriodSeconds (30 unless set). "
              "0 only with --force (else it is 1).")
@click.option("--now", is_flag=True, help="Stop the containers at once (--grace-period=1).")
@click.option("--force", is_flag=True,
              help="With --grace-period=0 (the default then): kill the containers at once.")
@_namespace_option
@_socket_option
@_reports_errors
def delete(resource: str | None, name: str | None, files: tuple[str, ...], grace_period: int,
           now: bool, force: bool, namespace: str, socket_path: Path | None) -> None:
    """Delete an object (pod, pv, pvc, sc, rc, sts), or every object of manifest files.

    \b
      volfs delete pod web             its volumes are torn down, EmptyDir data is gone
      volfs delete pod web --now       its containers get 1 s to stop, not 30
      volfs delete pvc nfs             refused while a pod uses the claim
      volfs delete -f app.yaml         pods first, then claims, volumes and classes

    Deleting a pod runs its delete hooks; data on NFS stays. A pod whose containers
    volfs runs first stops them: each gets SIGTERM, then SIGKILL once the grace
    period is over, and the command says how long it may wait.
    """
    grace = _grace_seconds(grace_period, now, force)
    if files:
        if resource or name:
            raise Failure("give either RESOURCE NAME or -f FILE, not both", EXIT_REFUSED)
        _delete_files(files, namespace, socket_path, grace)
        return
    if not resource or not name:
        raise click.UsageError(f"give the kind ({_OBJECT_WORDS}) and the name of the object "
                               "to delete, or -f FILE")
    kind = _kind(resource, OBJECT_KINDS)
    target = Target(kind, namespace if kind.namespaced else None, name)
    with _client(socket_path) as client:
        line, warnings = delete_object(client, target, grace, _say, _progress_view())
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(line)


def _grace_seconds(grace_period: int, now: bool, force: bool) -> int | None:
    """kubectl's rules: ``--now`` is 1; 0 needs ``--force`` (else it is 1); ``--force``
    alone is 0; negative (the default) is the pod's own (None)."""
    if now:
        if grace_period >= 0:
            raise click.UsageError("--now and --grace-period cannot be specified together")
        return 1
    if grace_period == 0 and not force:
        return 1
    if grace_period < 0:
        return 0 if force else None
    return grace_period


def _say(line: str) -> None:
    """A line about what the command is doing, on stderr (stdout keeps the results)."""
    click.echo(line, err=True)


def _progress_view() -> ProgressView:
    """Progress of long work goes to stderr too: a bar-like line on a terminal."""
    return ProgressView(sys.stderr)


def _delete_files(files: tuple[str, ...], namespace: str, socket_path: Path | None,
                  grace: int | None) -> None:
    manifests = [_load(name) for name in files]
    entries = in_delete_order(_entries(manifests), lambda entry: entry[1])
    if not entries:
        raise Failure("no objects passed to delete", EXIT_REFUSED)
    worst, view = 0, _progress_view()
    with _client(socket_path) as client:
        for source, kind, obj in entries:
            target = Target.of(kind, obj, namespace)
            try:
                line, warnings = delete_object(client, target, grace, _say, view)
            except ApiError as exc:
                click.echo(f"error: {source}: {exc}", err=True)
                worst = EXIT_FAILED
                continue
            for warning in warnings:
                click.echo(f"warning: {warning}", err=True)
            click.echo(line)
    if worst:
        sys.exit(worst)


@main.command()
@click.argument("resource")
@click.argument("name", required=False)
@_namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List objects of every namespace.")
@click.option("-o", "--output", type=click.Choice(["json", "yaml", "wide"]), help="Output format.")
@click.option("-l", "--selector", default=None,
              help="A label selector (app=web, tier!=db, 'env in (a,b)', key, !key).")
@click.option("-w", "--watch", is_flag=True,
              help="After the list, print each object again as it changes (Ctrl-C ends).")
@_socket_option
@_reports_errors
def get(
    resource: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str | None,
    selector: str | None,
    watch: bool,
    socket_path: Path | None,
) -> None:
    """List objects ('get pods'), or show one ('get pod NAME').

    \b
    RESOURCE: pods (po), persistentvolumes (pv), persistentvolumeclaims (pvc),
    storageclasses (sc), events (ev), replicationcontrollers (rc), statefulsets (sts).
    """
    kind = _kind(resource)
    if name is not None and all_namespaces:
        raise Failure(f"a {kind.singular} name cannot be combined with --all-namespaces",
                      EXIT_REFUSED)
    if name is not None and (selector or watch):
        raise Failure("a name cannot be combined with --selector or --watch", EXIT_REFUSED)
    listing = Listing(kind, None if all_namespaces or not kind.namespaced else namespace,
                      selector, output, all_namespaces)
    try:
        with _client(socket_path) as client:
            if name is not None:
                _get_one(client, kind, namespace if kind.namespaced else None, name, output)
                return
            answer = listing.fetch(client)
            text = listing.text(answer)
            if text:
                click.echo(text)
            else:
                where = f" in {listing.scope} namespace." if listing.scope is not None else ""
                click.echo(f"No resources found{where}", err=True)
            if watch:
                _follow(client, listing, answer)
    except ApiError as exc:
        if exc.code == 400:  # a selector the daemon could not parse
            raise Failure(str(exc), EXIT_REFUSED) from exc
        raise


@dataclass(frozen=True)
class Listing:
    """What ``get`` lists, and how it prints it: the CLI's pod table, the server's
    table for the other kinds, or the objects themselves (-o json|yaml)."""

    kind: Kind
    scope: str | None
    selector: str | None
    output: str | None
    all_namespaces: bool

    @property
    def as_table(self) -> bool:
        return self.output not in ("json", "yaml") and self.kind is not POD

    def fetch(self, client: Client) -> dict[str, Any]:
        return client.list_objects(self.kind, self.scope, labels=self.selector,
                                   table=self.as_table)

    def text(self, answer: dict[str, Any], *, header: bool = True) -> str:
        if self.output in ("json", "yaml"):
            return dump(answer, self.output)
        wide = self.output == "wide"
        if self.kind is POD:
            items = answer.get("items") or []
            text = (_pods_table(items, all_namespaces=self.all_namespaces, wide=wide)
                    if items else "")
        else:
            text = (server_table(answer, datetime.now(UTC), wide=wide,
                                 all_namespaces=self.all_namespaces and self.kind.namespaced)
                    if table_rows(answer) else "")
        return text if header else "\n".join(text.splitlines()[1:])


def _follow(client: Client, listing: Listing, listed: dict[str, Any]) -> None:
    """``get --watch``: each change after the list, printed as the list printed it."""
    since = str((listed.get("metadata") or {}).get("resourceVersion") or "")
    columns = listed.get("columnDefinitions") or []
    try:
        for event in client.watch_objects(listing.kind, listing.scope, since,
                                          labels=listing.selector, table=listing.as_table):
            obj = event.get("object") or {}
            if listing.as_table:  # a one-row Table; the columns came with the list
                obj = dict(obj, columnDefinitions=obj.get("columnDefinitions") or columns)
                text = listing.text(obj, header=False)
            elif listing.output in ("json", "yaml"):
                text = listing.text(obj)
            else:
                text = listing.text({"items": [obj]}, header=False)
            if text:
                click.echo(text)
    except KeyboardInterrupt:
        pass


def _get_one(client: Client, kind: Kind, namespace: str | None, name: str,
             output: str | None) -> None:
    if output in ("json", "yaml"):
        click.echo(dump(client.get_object(kind, namespace, name), output))
    elif kind is POD:
        pod = client.get_object(kind, namespace, name)
        click.echo(_pods_table([pod], all_namespaces=False, wide=output == "wide"))
    else:
        answer = client.get_object(kind, namespace, name, table=True)
        click.echo(server_table(answer, datetime.now(UTC), all_namespaces=False,
                                wide=output == "wide"))


def _pods_table(pods: list[dict[str, Any]], *, all_namespaces: bool, wide: bool) -> str:
    return pods_table(pods, datetime.now(UTC), all_namespaces=all_namespaces, wide=wide)


@main.command()
@click.argument("resource")
@click.argument("name")
@_namespace_option
@_socket_option
@_reports_errors
def describe(resource: str, name: str, namespace: str, socket_path: Path | None) -> None:
    """Show a pod, pv, pvc, sc, rc or sts in detail, with its events.

    A pod: its containers' mounts, and per volume its source, host path and usage.
    A claim: its volume, capacity and the pods that use it.
    """
    kind = _kind(resource, OBJECT_KINDS)
    scope = namespace if kind.namespaced else None
    now = datetime.now(UTC)
    with _client(socket_path) as client:
        obj = client.get_object(kind, scope, name)
        events = _events(client, kind, scope, name)
        if kind is POD:
            text = describe_pod(obj, events, now)
        elif kind is PERSISTENT_VOLUME:
            text = describe_volume(obj, events, now)
        elif kind is STORAGE_CLASS:
            text = describe_class(obj, events, now)
        elif kind in WORKLOADS:
            pods = client.list_objects(POD, namespace).get("items") or []
            text = describe_workload(obj, pods, events, now)
        else:
            pods = client.list_objects(POD, namespace).get("items") or []
            text = describe_claim(obj, pods, events, now)
    click.echo(text)


def _events(client: Client, kind: Kind, namespace: str | None,
            name: str) -> list[dict[str, Any]]:
    """The events about one object (best effort: none when the daemon serves none).

    Events about a cluster-scoped object may be in any namespace; they are looked for
    in all of them.
    """
    try:
        answer = client.list_objects(EVENT, namespace, fields=f"involvedObject.name={name}")
    except ApiError:
        return []
    events = []
    for event in answer.get("items") or []:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") in (kind.kind, "", None):
            events.append(event)
    return events
