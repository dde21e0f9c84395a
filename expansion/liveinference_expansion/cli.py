"""`liveinference serve`: starts the expansion service (and a Python worker pool).

    liveinference serve [--host 127.0.0.1] [--port 8097] [--worker-pool-dir DIR]
                        [--tls-cert server.pem --tls-key server.key [--tls-client-ca ca.pem]]
                        [--allow-module mypackage.features] [--allow-inline-source]
                        [--model-root DIR ...] [--stop-on-stdin-eof]
    liveinference serve --list-handlers

A host other than loopback is refused unless TLS files are given. The service checks that a
model file exists only inside a `--model-root` folder; other paths are left to the workers.

It prints one line with the addresses once it listens, and stops cleanly on SIGTERM or
SIGINT (Ctrl-C), stopping the workers it started. With `--stop-on-stdin-eof` it also stops
when its standard input closes, so a parent that holds the other end of a pipe takes the service
with it however it dies (even by SIGKILL).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Callable, List, Optional

from liveinference_expansion.handlers import describe_handlers
from liveinference_expansion.model_paths import model_roots
from liveinference_expansion.policy import DEFAULT_ALLOWED_MODULES, Policy
from liveinference_expansion.tls import InsecureListenRefused, TlsFiles

__all__ = ["main"]

_LOGGER = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liveinference",
        description="liveinference's cross-language expansion service",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve liveinference's RunInference to Java (and other SDK) pipelines",
        description="Expands liveinference_expansion.transform.ConfiguredRunInference, and "
        "nothing else, for cross-language pipelines.",
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1, loopback only); any "
                       "other (0.0.0.0 for every interface) needs --tls-cert and --tls-key")
    serve.add_argument("--port", type=int, default=8097,
                       help="expansion service port (default 8097; 0 picks a free port)")
    serve.add_argument("--worker-pool-dir", metavar="DIR",
                       help="directory (mode 0700, made if missing) for the Python worker "
                       "pool's Unix socket; default: a fresh one under the temp dir")
    serve.add_argument("--process-workers", action="store_true",
                       help="run no pool: hand out a PROCESS environment whose boot command "
                       "the runner runs to start each Python worker itself (Beam's Flink job "
                       "server cannot dial the pool's Unix socket)")
    serve.add_argument("--tls-cert", metavar="PEM",
                       help="server certificate chain: serve the expansion port over TLS")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    serve.add_argument("--tls-client-ca", metavar="PEM",
                       help="CA certificates for client certificates: require mutual TLS")
    serve.add_argument("--no-worker-pool", action="store_true",
                       help="run no worker pool; the Python steps then use "
                       "--environment-type/--environment-config")
    serve.add_argument("--environment-type", choices=["PROCESS", "DOCKER", "EXTERNAL"],
                       help="environment of the Python steps with --no-worker-pool")
    serve.add_argument("--environment-config",
                       help="that environment's configuration, e.g. host:port of a worker "
                       "pool that runs beside each Flink TaskManager (EXTERNAL)")
    serve.add_argument("--allow-module", action="append", default=[], metavar="MODULE",
                       help="a module whose functions requests may name as preprocess, "
                       "postprocess or handler callables (repeatable; "
                       f"{', '.join(DEFAULT_ALLOWED_MODULES)} is always allowed)")
    serve.add_argument("--allow-inline-source", action="store_true",
                       help="accept Python source for functions, and Beam's stock Java "
                       "RunInference (its model loader is source): this runs ARBITRARY CODE "
                       "sent by any client that can reach the service")
    serve.add_argument("--model-root", action="append", default=[], metavar="DIR",
                       help="a folder of model files (repeatable): a request naming a missing "
                       "file inside it is refused when the pipeline is built; about paths "
                       "elsewhere the service answers nothing (the workers report them when "
                       "they load), so clients cannot probe which files exist")
    serve.add_argument("--list-handlers", action="store_true",
                       help="print the handler names requests may use, with the Python class "
                       "each builds, and exit")
    serve.add_argument("--stop-on-stdin-eof", action="store_true",
                       help="stop when standard input closes: a parent process that starts the "
                       "service with a pipe as its stdin takes it along when it exits or dies")
    serve.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def _stop_on_stdin_eof(stop: Callable[[], None]) -> None:
    """Calls `stop` from a daemon thread once standard input reaches its end."""

    def watch() -> None:
        while os.read(sys.stdin.fileno(), 4096):
            pass
        _LOGGER.info("standard input closed (--stop-on-stdin-eof), shutting down")
        stop()

    threading.Thread(target=watch, name="stop-on-stdin-eof", daemon=True).start()


def _serve(args: argparse.Namespace) -> int:
    from liveinference_expansion.service import ExpansionServer, ServiceConfig

    if args.list_handlers:
        sys.stdout.write("".join(f"{line}\n" for line in describe_handlers()))
        sys.stdout.flush()
        return 0
    if args.no_worker_pool and not args.environment_type:
        sys.stderr.write("liveinference serve: --no-worker-pool needs --environment-type\n")
        return 2
    if args.process_workers and args.no_worker_pool:
        sys.stderr.write("liveinference serve: --process-workers and --no-worker-pool exclude "
                         "each other\n")
        return 2
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        sys.stderr.write("liveinference serve: TLS needs both --tls-cert and --tls-key "
                         "(--tls-client-ca only with them)\n")
        return 2
    try:
        roots = model_roots(args.model_root)
    except NotADirectoryError as error:
        sys.stderr.write(f"liveinference serve: {error}\n")
        return 2
    policy = Policy(
        allowed_modules=tuple(dict.fromkeys([*DEFAULT_ALLOWED_MODULES, *args.allow_module])),
        allow_inline_source=args.allow_inline_source,
        model_roots=roots,
    )
    config = ServiceConfig(
        host=args.host,
        port=args.port,
        worker_pool=not args.no_worker_pool,
        process_workers=args.process_workers,
        worker_pool_dir=args.worker_pool_dir,
        environment_type=args.environment_type,
        environment_config=args.environment_config,
        policy=policy,
        tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None,
    )
    server = ExpansionServer(config)
    try:
        server.start()
    except InsecureListenRefused as error:
        _LOGGER.error("%s", error)
        server.stop()
        return 2
    except OSError as error:
        _LOGGER.error("%s", error)
        server.stop()
        return 1

    def stop(signum: int, _frame: object) -> None:
        _LOGGER.info("received %s, shutting down", signal.Signals(signum).name)
        server.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.stop_on_stdin_eof:
        _stop_on_stdin_eof(server.stop)
    workers = (f"; Python workers at {server.worker_pool_address}"
               if server.worker_pool_address else "")
    sys.stdout.write(f"liveinference expansion service listening on {server.address}{workers}\n")
    sys.stdout.flush()
    if policy.allow_inline_source:
        _LOGGER.warning("inline Python source is allowed: clients can run arbitrary code")
    server.wait()
    sys.stdout.write("liveinference expansion service stopped\n")
    sys.stdout.flush()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the `liveinference` command line.

    Args:
        argv: The arguments, without the program name; defaults to `sys.argv[1:]`.

    Returns:
        The exit status.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        # Importing Beam 2.7x logs a warning first, which would leave the root logger at
        # WARNING and the service's own INFO lines (listening, shutting down) unseen.
        force=True,
    )
    if args.command == "serve":
        return _serve(args)
    return 2  # argparse refuses unknown commands before this
