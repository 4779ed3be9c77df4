"""``llm3d serve`` (the reward API) and ``llm3d worker`` (a Celery worker on the blender queue).

Both read the configuration of DESIGN §8; their flags override it. They are what the
Docker images run (``docker/api.Dockerfile``, ``docker/worker.Dockerfile``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from llm3d.commands.common import ConfigOption, err_console
from llm3d.config import Config, load_config
from llm3d.exceptions import ConfigError

__all__ = ["health_command", "serve_command", "worker_command"]

BackendName = Literal["inline", "celery", "modal"]


def _load(config_path: Path | None, **overrides: Any) -> Config:
    try:
        return load_config(config_path, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc


def _one_thread_per_process() -> None:
    """The farm parallelises with processes and threads of its own: OpenMP inside each
    (pykdtree's queries) would only oversubscribe the cores (measured ~30 % slower per
    reward on a loaded 2-core machine). Must run before the metrics' libraries load."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve_command(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface (default api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default api.port).")] = None,
    backend: Annotated[
        BackendName | None, typer.Option(help="Execution backend (default api.backend).")
    ] = None,
) -> None:
    """Serve the reward API (DESIGN §5) until interrupted; a worker that dies is restarted.

    This process supervises ``api.workers`` API processes (uvicorn's supervisor) on one
    listening socket: a worker killed by a signal, the OOM killer or a crash is replaced
    within seconds on the same port. A worker that cannot start (a broken configuration
    or dataset) stops the service with exit status 3. On SIGTERM it stops taking requests,
    answers those in flight within ``api.shutdown_grace_s`` (items not scored by then are
    ``infra_error``) and exits.
    """
    _one_thread_per_process()
    from uvicorn import Config as UvicornConfig
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from api.app import SERVE_ENV

    overrides = {"api__host": host, "api__port": port, "api__backend": backend}
    cfg = _load(config, **overrides)
    _logging(cfg.log_level)
    log = logging.getLogger("llm3d.serve")
    if cfg.api.token is None and cfg.api.host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning(
            "serving on %s without a token: set LLM3D_API_TOKEN to require one", cfg.api.host
        )
    # the workers load the same configuration: the same file and flags (and environment)
    os.environ[SERVE_ENV] = json.dumps(
        {
            "config": str(config) if config is not None else None,
            "overrides": {k: v for k, v in overrides.items() if v is not None},
        }
    )
    server = UvicornConfig(
        "api.app:create_served_app",
        factory=True,
        host=cfg.api.host,
        port=cfg.api.port,
        workers=cfg.api.workers,
        log_level=cfg.log_level.lower(),
        access_log=False,
        # on SIGTERM the batches in flight answer within api.shutdown_grace_s (what is
        # scored, and infra_error for the rest); this only bounds sending those answers
        timeout_graceful_shutdown=int(cfg.api.shutdown_grace_s) + 5,
        # a worker busy scoring still answers the supervisor's pings from a thread; only
        # one that cannot for this long is taken for hung and replaced
        timeout_worker_healthcheck=30,
    )
    supervisor = Multiprocess(server, sockets=[server.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        err_console.print("the reward API could not start: see the log above")
        raise typer.Exit(STARTUP_FAILURE)


def worker_command(
    config: ConfigOption = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Worker processes, each with its fork server (default farm.concurrency)."
        ),
    ] = None,
    queue: Annotated[
        str | None, typer.Option(help="Queue to consume (default farm.queue).")
    ] = None,
) -> None:
    """Run a Celery worker on the ``blender`` queue (Redis at farm.redis_url).

    Exits with the worker's status: 0 after a requested shutdown, non-zero when it failed.
    """
    _one_thread_per_process()
    from worker.farm import tasks
    from worker.farm.celery_app import app, configure

    cfg = _load(config, farm__concurrency=concurrency, farm__queue=queue)
    _logging(cfg.log_level)
    configure(app, cfg)
    tasks.use_config(cfg)
    processes = cfg.farm.concurrency or os.cpu_count() or 1
    status = _run_celery(
        [
            "--app",
            "worker.farm.celery_app:app",  # the app configured above (the module is imported)
            "worker",
            "--queues",
            cfg.farm.queue,
            "--concurrency",
            str(processes),
            "--loglevel",
            cfg.log_level,
            "--hostname",
            f"blender-{os.getpid()}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    if status:
        raise typer.Exit(status)


def _run_celery(argv: list[str]) -> int:
    """Run Celery's command line on ``argv``; its exit status.

    Not ``app.worker_main``/``app.start``: they drop the status, so a worker that died (an
    "Unrecoverable error", status 1) exited 0 and looked like a requested stop to its
    supervisor (a restart policy on failure, a health check, a shell loop).
    """
    from celery.bin.celery import celery
    from click.exceptions import Exit

    try:
        status = celery.main(args=argv, standalone_mode=False)
    except Exit as exc:  # raised rather than returned by some click versions
        status = exc.exit_code
    return int(status or 0)


def health_command(
    config: ConfigOption = None,
    url: Annotated[
        str | None, typer.Option(help="The API's base URL (default from api.host/api.port).")
    ] = None,
    workers: Annotated[
        bool,
        typer.Option(
            "--workers", help="Instead, check that a Celery worker of this host answers a ping."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
) -> None:
    """Health check for containers: exit 0 when the API (or this host's worker) answers."""
    cfg = _load(config)
    if workers:
        from worker.farm.celery_app import app, configure

        configure(app, cfg)
        host = socket.gethostname()
        replies = app.control.ping(timeout=timeout) or []
        mine = sorted(name for reply in replies for name in reply if name.endswith("@" + host))
        if not mine:
            err_console.print(f"no Celery worker of host {host} answered within {timeout}s")
            raise typer.Exit(1)
        sys.stdout.write(json.dumps({"status": "ok", "workers": mine}) + "\n")
        return
    import httpx

    host = "127.0.0.1" if cfg.api.host in {"0.0.0.0", "::"} else cfg.api.host
    base = url or f"http://{host}:{cfg.api.port}"
    try:
        response = httpx.get(base.rstrip("/") + "/healthz", timeout=timeout)
    except httpx.HTTPError as exc:
        err_console.print(f"{base}/healthz: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    sys.stdout.write(response.text.strip() + "\n")
    if response.status_code != 200:
        raise typer.Exit(1)
