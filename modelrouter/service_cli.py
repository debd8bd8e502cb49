"""``modelrouter status`` and ``modelrouter export``: a served experiment, read from outside.

``status URL`` reads ``GET {prefix}/stats?format=text`` (the report; ``--json``: ``/stats``, the
analysis as JSON) with the admin token. ``export URL -o rows.csv`` saves the streamed
``GET {prefix}/export?format=csv``; ``export --snapshot FILE --config TOML -o rows.csv|.parquet``
restores a snapshot file into an experiment built from the config (the same identity checks
as a router's restore: experiment, variants and their order, control, level, salt, metrics,
segment dimensions) and writes its rows (see :mod:`modelrouter.store.export` for the columns).

The admin token comes from ``--token`` or ``$MODELROUTER_ADMIN_TOKEN`` (the environment keeps
it out of the process list). HTTP goes through :mod:`urllib.request` (stdlib): the command
needs no extra package.

Exit status: 0 done; 1 the service answered an error (the endpoint is off or the prefix wrong:
404, analysis not possible: 409, store down: 503, an answer that is not what the endpoint
sends), or the snapshot or config was refused; 2 bad arguments; 3 the service cannot be
reached (connection refused, unknown host, timeout); 4 the admin token was refused (401 without
one, 403 wrong). Every failure is one ``modelrouter <command>: error: ...`` line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["EXIT_AUTH", "EXIT_SERVICE", "EXIT_UNREACHABLE", "CommandError", "add_commands",
           "commands", "endpoint_url", "run"]

EXIT_SERVICE = 1
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
TOKEN_ENV = "MODELROUTER_ADMIN_TOKEN"


class CommandError(Exception):
    """A failure to report in one line, with the command's exit status."""

    def __init__(self, message: str, status: int = EXIT_SERVICE) -> None:
        super().__init__(message)
        self.status = status


# -- HTTP ---------------------------------------------------------------------------------
def endpoint_url(base: str, prefix: str, path: str) -> str:
    """``{base}{prefix}{path}``; ``base`` may already end with the prefix. http(s) only."""
    if not base.startswith(("http://", "https://")):
        raise CommandError(f"URL ({base!r}) must start with http:// or https://", 2)
    base = base.rstrip("/")
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    if prefix and base.endswith(prefix):
        base = base[:-len(prefix)]
    return f"{base}{prefix}{path}"


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The service's ``{"error": ...}`` message, else the start of its body."""
    try:
        raw = exc.read(4096)
    except OSError:
        raw = b""
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
    except ValueError:
        pass
    return raw.decode("utf-8", "replace").strip()[:200] or (exc.reason or "")


@contextmanager
def http_get(url: str, token: str, accept: str, timeout: float
             ) -> Iterator[http.client.HTTPResponse]:
    """Open ``GET url`` with the bearer token; failures as :class:`CommandError`."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": accept,
                                                   "User-Agent": "modelrouter-cli"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        why = _error_text(exc)
        exc.close()
        status = EXIT_AUTH if exc.code in (401, 403) else EXIT_SERVICE
        hint = {401: " (give the admin token: --token or $" + TOKEN_ENV + ")",
                404: " (is the admin API on, i.e. admin_token set, and the --prefix right?)"}
        raise CommandError(f"{url} answered {exc.code}: {why}{hint.get(exc.code, '')}",
                           status) from None
    except urllib.error.URLError as exc:
        raise CommandError(f"cannot reach {url}: {exc.reason}", EXIT_UNREACHABLE) from None
    except (TimeoutError, ConnectionError) as exc:
        raise CommandError(f"cannot reach {url}: {exc}", EXIT_UNREACHABLE) from None
    except ValueError as exc:  # a URL urllib cannot parse
        raise CommandError(f"URL ({url!r}) is not valid: {exc}", 2) from None
    with response:
        yield response


def _token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        raise CommandError(f"give the admin token: --token or ${TOKEN_ENV}", 2)
    return str(token)


# -- status -------------------------------------------------------------------------------
def status(args: argparse.Namespace) -> int:
    """Print the report of a served experiment (``--json``: the analysis as JSON)."""
    token = _token(args)
    path = "/stats" if args.json else "/stats?format=text"
    url = endpoint_url(args.url, args.prefix, path)
    accept = "application/json" if args.json else "text/plain"
    try:
        with http_get(url, token, accept, args.timeout) as response:
            kind = response.headers.get_content_type()
            body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise CommandError(f"reading {url} failed: {exc}", EXIT_UNREACHABLE) from None
    if args.json:
        try:
            data = json.loads(body)
        except ValueError:
            raise CommandError(f"{url} did not answer JSON (content type {kind!r}); is it a "
                               "modelrouter service?") from None
        print(json.dumps(data, indent=2, sort_keys=False))
        return 0
    if kind != "text/plain":
        raise CommandError(f"{url} answered {kind!r}, not the report text; is it a modelrouter "
                           "service with this version's /stats?format=text?")
    text = body.decode("utf-8", "replace")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# -- export -------------------------------------------------------------------------------
def _write_stream(source: IO[bytes], output: str) -> int:
    """Copy a response to ``output`` (``-``: stdout) through a ``.part`` file; bytes copied."""
    if output == "-":
        shutil.copyfileobj(source, sys.stdout.buffer, 1 << 16)
        sys.stdout.buffer.flush()
        return 0
    target = Path(output)
    part = target.with_name(target.name + ".part")
    size = 0
    try:
        with part.open("wb") as fh:
            while chunk := source.read(1 << 16):
                fh.write(chunk)
                size += len(chunk)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return size


def _remote_export(args: argparse.Namespace) -> int:
    if args.output.lower().endswith(".parquet"):
        raise CommandError("a running service exports CSV: write -o FILE.csv (Parquet: export "
                           "a snapshot file with --snapshot)", 2)
    token = _token(args)
    url = endpoint_url(args.url, args.prefix, "/export?format=csv")
    try:
        with http_get(url, token, "text/csv", args.timeout) as response:
            kind = response.headers.get_content_type()
            if kind != "text/csv":
                raise CommandError(f"{url} answered {kind!r}, not CSV; is it a modelrouter "
                                   "service with /export?")
            size = _write_stream(response, args.output)
    except (OSError, http.client.HTTPException) as exc:  # cut off mid-stream, a full disk
        raise CommandError(f"export from {url} failed: {exc}", EXIT_UNREACHABLE) from None
    if args.output != "-":
        print(f"wrote {args.output} ({size:,} bytes) from {url}", file=sys.stderr)
    return 0


def _variants(data: dict[str, Any], args: argparse.Namespace, weights: Any) -> list[str]:
    """Variant names, in order: ``--variants``, the file's ``[variants]`` table, its weights."""
    if args.variants:
        return [v.strip() for v in args.variants.split(",") if v.strip()]
    for table in (data.get("variants"), data.get("router", {}).get("variants")):
        if isinstance(table, dict) and table:
            return [str(v) for v in table]
    if weights:
        return [str(v) for v in weights]
    raise CommandError(f"{args.config}: no [variants] table and no weights; give the variant "
                       "names in order with --variants a,b", 2)


def _snapshot_export(args: argparse.Namespace) -> int:
    from modelrouter.config import RouterConfig, load_toml
    from modelrouter.exceptions import ModelRouterError
    from modelrouter.routing.experiment import Experiment
    from modelrouter.store.export import write_export

    if args.config is None:
        raise CommandError("--snapshot needs --config (the experiment's TOML: its identity "
                           "is checked against the file)", 2)
    if args.output == "-":
        raise CommandError("-o: give a file name (.csv or .parquet) with --snapshot", 2)
    try:
        data = load_toml(args.config)
        # the rows only: no remote store, no snapshot schedule of the served config
        config = RouterConfig.from_toml(args.config).replace(store="memory",
                                                              snapshot_path=None)
        names = _variants(data, args, config.weights)
        dims = [d.strip() for d in args.segment_dims.split(",")] if args.segment_dims else ()
        experiment = Experiment(dict.fromkeys(names), config, segment_dims=dims)
        try:
            info = experiment.restore(args.snapshot)
            rows = write_export(experiment.store.snapshot(), args.output)
        finally:
            experiment.close()
    except ImportError as exc:  # Parquet without pyarrow
        raise CommandError(str(exc), 2) from None
    except (ModelRouterError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {args.output}: {rows:,} rows ({info.level} level, experiment "
          f"{info.experiment!r}, snapshot of {info.units:,} units)", file=sys.stderr)
    return 0


def export(args: argparse.Namespace) -> int:
    """Write the rows of a served experiment (URL) or of a snapshot file."""
    if (args.url is None) == (args.snapshot is None):
        raise CommandError("give either URL (a running service) or --snapshot FILE", 2)
    return _remote_export(args) if args.url is not None else _snapshot_export(args)


# -- the parsers --------------------------------------------------------------------------
def _remote_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=None,
                   help=f"admin token (default ${TOKEN_ENV})")
    p.add_argument("--prefix", default="/_modelrouter",
                   help="the router's http_prefix (default /_modelrouter)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")


def add_commands(sub: Any) -> None:
    """Add ``status`` and ``export`` to the ``modelrouter`` subcommands (``sub``: the
    subparsers action of the main parser)."""
    st = sub.add_parser("status", help="print the report of a running service",
                        description="Print the report of a served experiment (GET "
                        "{prefix}/stats?format=text), or with --json the analysis as JSON. "
                        "Exit status: 0 ok, 1 the service answered an error, 2 bad arguments, "
                        "3 unreachable, 4 admin token refused.")
    st.add_argument("url", help="the service, e.g. http://127.0.0.1:8000")
    st.add_argument("--json", action="store_true", help="print /stats JSON instead")
    _remote_options(st)
    st.set_defaults(func=status)
    ex = sub.add_parser("export", help="write unit-level rows to CSV or Parquet",
                        description="Write one row per unit (request level: per group) from a "
                        "running service (URL: streamed CSV from {prefix}/export) or from a "
                        "snapshot file (--snapshot FILE --config TOML; .parquet needs pyarrow: "
                        "pip install 'modelrouter[parquet]').")
    ex.add_argument("url", nargs="?", default=None, help="the service, e.g. "
                    "http://127.0.0.1:8000")
    ex.add_argument("-o", "--output", default="-",
                    help="file to write (.csv; .parquet with --snapshot); default - (stdout)")
    ex.add_argument("--snapshot", default=None, help="a snapshot file (router.save)")
    ex.add_argument("--config", default=None, help="with --snapshot: the experiment's TOML")
    ex.add_argument("--variants", default=None,
                    help="with --snapshot: variant names in order, when the config has no "
                    "[variants] table or weights")
    ex.add_argument("--segment-dims", default=None, dest="segment_dims",
                    help="with --snapshot: segment dimensions in order (default: the config's "
                    "segments)")
    _remote_options(ex)
    ex.set_defaults(func=export)


def run(command: Any, args: argparse.Namespace, prog: str = "modelrouter") -> int:
    """Run ``command(args)``; a :class:`CommandError` becomes one stderr line and its status."""
    try:
        result: int = command(args)
        return result
    except CommandError as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130


def commands() -> Sequence[str]:
    """The subcommands this module adds."""
    return ("status", "export")
