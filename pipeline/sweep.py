"""``hftbot sweep``: parameter and data sweeps (configs x captures) on the local machine or on Ray.

    hftbot sweep risk.limits.max_order_qty=100,200 'model=glob(*)' --captures day1.pcap day2.pcap
    hftbot sweep --launcher ray --address auto risk.limits.max_order_qty=100,200 --captures /shared/day1.pcap

The overrides use Hydra's multirun syntax, parsed by Hydra's own override parser: ``k=a,b``,
``k=range(1,5)``, ``k=choice(a,b)``, ``group=glob(*)``; every sweep override is one axis and the jobs
are their cartesian product (as ``hftbot run -m`` would launch them). ``--captures`` adds the data
axis (``feed.path``). Every job is checked first (composed and validated in this process: a bad
override is a one-line error before anything starts), then run as its own ``hftbot run`` process
with its own run directory ``OUT/job-NNN`` (report.json, .hydra/config.yaml, the run's logs).

Launchers: ``local`` (the default) runs the jobs one after another on this machine; ``ray`` sends
each to a Ray task (``num_cpus=--cpus-per-job``) that runs the same command on whichever node Ray
picks and returns the report, so the driver needs no shared file system (the run directory stays on
the node; captures given by path must exist on every node). ``--address`` joins a running cluster;
without it a local Ray instance is started for the sweep and stopped after, unless the caller
already started one (``ray.init``), which is then used as it is.

Results: one row per job in ``OUT/sweep.parquet`` and ``OUT/sweep.csv`` (the swept keys as
``cfg.<key>`` columns with the values the run used, then status, PnL, fills, rejects, throughput and
per-stage latency percentiles, all copied from each run's report.json) and one comparison page
``OUT/sweep.html``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import html
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

#: the Hydra config root (conf/ at the top of the repository)
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class SweepError(ValueError):
    """A sweep that cannot start (bad override, missing capture, Ray not installed...)."""


@dataclass
class Job:
    index: int
    config_name: str
    overrides: list[str]          # this job's overrides, Hydra syntax, no sweeps left
    swept: dict[str, str]         # key -> the value's text, for the swept keys only
    run_dir: str
    timeout_s: float | None = None


# --- the grid -------------------------------------------------------------------------------------

def _group_options(group: str) -> list[str]:
    d = CONF_DIR / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def expand(overrides: Sequence[str], captures: Sequence[str] = ()) -> list[tuple[list[str], dict[str, str]]]:
    """The jobs of a sweep: Hydra multirun overrides (and ``captures``, a ``feed.path`` axis) ->
    one (overrides, swept key -> value) per point of the cartesian product, in Hydra's order
    (the last axis varies fastest)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Transformer, ValueType
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise SweepError(f"bad override: {str(exc).splitlines()[0]}") from None
    axes: list[list[tuple[str, str, str | None]]] = []  # (override line, key, swept value text)
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if o.value_type == ValueType.GLOB_CHOICE_SWEEP:  # glob(...) over a config group's options
                names = o.value().filter(_group_options(o.key_or_group))
                if not names:
                    raise SweepError(f"{o.input_line}: matches no option of conf/{o.key_or_group}/")
                values = names
            else:
                # Transformer.str: each value as override text (quoted where needed), as Hydra's
                # basic sweeper writes the jobs' overrides
                values = list(o.sweep_iterator(transformer=Transformer.str))
            if not values:
                raise SweepError(f"{o.input_line}: sweeps over no value")
            axes.append([(f"{key}={v}", o.key_or_group, str(v)) for v in values])
        else:
            axes.append([(o.input_line, o.key_or_group, None)])
    if captures:
        paths = []
        for c in captures:
            p = Path(c).expanduser()
            if not p.is_file():
                raise SweepError(f"--captures: no such file: {c}")
            paths.append(str(p.resolve()))
        if any(o.key_or_group == "feed.path" for o in parsed):
            raise SweepError("give the captures either with --captures or as feed.path=..., not both")
        axes.append([(f"feed.path={_quote(p)}", "feed.path", p) for p in paths])
    jobs = []
    for point in itertools.product(*axes) if axes else [()]:
        jobs.append(([line for line, _, _ in point], {k: v for _, k, v in point if v is not None}))
    return jobs


def _quote(value: str) -> str:
    """A string as a Hydra override value (quoted: paths may hold ',', '=', spaces...)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check(config_name: str, overrides: list[str]) -> Any:
    """Compose and validate one job's config here, as ``hftbot run`` will (a bad key or value is a
    ``SweepError`` naming it). Returns the config."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.config import ConfigError, register, validate

    register()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
        validate(cfg)
    except (HydraException, OmegaConfBaseException, ConfigError) as exc:
        raise SweepError(f"{' '.join(overrides) or config_name}: {str(exc).splitlines()[0]}") from None
    return cfg


def plan(config_name: str, overrides: Sequence[str], out: Path, captures: Sequence[str] = (),
         timeout_s: float | None = None, log: Callable[[str], None] = print) -> list[Job]:
    """Expand, check every job, and make sure each job's input exists before any starts (a
    generated sample is written once here, not by parallel jobs racing for it)."""
    from pipeline.feed import resolve_input

    if not (CONF_DIR / f"{config_name}.yaml").is_file():
        names = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
        raise SweepError(f"--config-name {config_name}: no conf/{config_name}.yaml (choose from {', '.join(names)})")
    jobs = []
    for i, (ovr, swept) in enumerate(expand(overrides, captures)):
        cfg = check(config_name, ovr)
        if cfg.feed.source == "live":
            raise SweepError("feed.source=live: a sweep replays captures (feed.path) or the generated sample")
        try:
            resolve_input(cfg.feed, log=lambda m: log(f"sweep      {m}"))
        except FileNotFoundError as exc:
            raise SweepError(str(exc)) from None
        jobs.append(Job(i, config_name, ovr, swept, str(out / f"job-{i:03d}"), timeout_s))
    return jobs


# --- one job --------------------------------------------------------------------------------------

def run_job(job: Job) -> dict[str, Any]:
    """Run one job as ``hftbot run`` in a child process; return what the table needs: its exit
    status, its report (report.json) and the config values it used. Runs in the driver (local
    launcher) or in a Ray worker, on any node."""
    from omegaconf import OmegaConf

    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pipeline", "run", "--config-name", job.config_name, *job.overrides,
           f"hydra.run.dir={_quote(str(run_dir))}"]
    t0 = time.perf_counter()
    status = None
    with open(run_dir / "sweep-job.log", "wb") as out:
        try:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=job.timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc, status = 124, "timeout"
    wall = time.perf_counter() - t0
    report = None
    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        pass
    values: dict[str, Any] = {}
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        for key in job.swept:
            v = OmegaConf.select(cfg, key, default=None)
            values[key] = OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
    except (OSError, ValueError):
        values = dict(job.swept)
    try:
        tail = (run_dir / "sweep-job.log").read_text(errors="replace").strip().splitlines()[-5:]
    except OSError:
        tail = []
    return {"job": job.index, "overrides": job.overrides, "config": values, "rc": rc, "status": status,
            "report": report, "run_dir": str(run_dir), "host": socket.gethostname(), "wall_s": round(wall, 3),
            "log_tail": tail}


# --- launchers ------------------------------------------------------------------------------------

def launch_local(jobs: list[Job], log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    results = []
    for job in jobs:
        log(f"sweep      job {job.index + 1}/{len(jobs)}  {' '.join(job.overrides)}")
        results.append(run_job(job))
        _log_result(results[-1], log)
    return results


def launch_ray(jobs: list[Job], address: str | None = None, num_cpus: int | None = None,
               cpus_per_job: float = 1.0, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Each job is a Ray task (``run_job`` in a worker). Uses the Ray instance already started
    in this process if there is one; else joins ``address`` or starts a local one, stopped after."""
    try:
        import ray
    except ImportError:
        raise SweepError("--launcher ray needs Ray: pip install -e '.[sweep]'") from None
    started = False
    if not ray.is_initialized():
        _probe(address)
        try:
            ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level="warning")
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SweepError(f"--address {address}: cannot join the Ray cluster: {exc}") from None
        started = True
    try:
        res = ray.cluster_resources()
        log(f"sweep      ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):g} CPUs; {len(jobs)} jobs, "
            f"{cpus_per_job:g} CPU each")
        task = ray.remote(num_cpus=cpus_per_job, max_retries=0)(run_job)
        pending = {task.remote(job): job for job in jobs}
        results = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            pending.pop(done[0])
            results.append(ray.get(done[0]))
            _log_result(results[-1], log)
        return sorted(results, key=lambda r: r["job"])
    finally:
        if started:
            ray.shutdown()


def _probe(address: str | None) -> None:
    """A ``host:port`` that nothing listens on is a one-line error at once (``ray.init`` would
    retry for minutes). ``auto``, ``ray://`` and no address are left to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address {address}: expected host:port, auto or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise SweepError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def _log_result(r: dict[str, Any], log: Callable[[str], None]) -> None:
    row = row_of(r)
    log(f"sweep      job {r['job']:03d} {row['status']} (exit {r['rc']}, {r['wall_s']:.1f} s on {r['host']})  "
        f"pnl ${row['pnl_total_usd']:,.2f}  fills {row['fills']}  rejected {row['rejected']}  {r['run_dir']}")


# --- the table ------------------------------------------------------------------------------------

#: report.json figures copied into each row: column -> path in the report
FIGURES: dict[str, tuple[str, ...]] = {
    "messages": ("feed", "messages_in"),
    "replay_s": ("timing", "replay_s"),
    "msgs_per_s": ("timing", "msgs_per_s"),
    "intents": ("risk", "intents"),
    "accepted": ("risk", "accepted"),
    "rejected": ("risk", "rejected"),
    "fills": ("risk", "fills"),
    "open_orders": ("risk", "open_orders"),
    "pnl_realised_usd": ("risk", "pnl_usd", "realised"),
    "pnl_unrealised_usd": ("risk", "pnl_usd", "unrealised"),
    "pnl_total_usd": ("risk", "pnl_usd", "total"),
    "gross_exposure_usd": ("risk", "exposure_usd", "gross"),
    "orders_sent": ("execution", "new_sent"),
    "orders_filled": ("execution", "orders_filled"),
    "venue_rejected": ("execution", "orders_rejected"),
    "kill_switch": ("risk", "kill_switch"),
}
_INT_COLS = {"messages", "intents", "accepted", "rejected", "fills", "open_orders", "orders_sent", "orders_filled",
             "venue_rejected"}
_FLOAT_COLS = {"replay_s", "msgs_per_s", "pnl_realised_usd", "pnl_unrealised_usd", "pnl_total_usd",
               "gross_exposure_usd"}


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def row_of(r: dict[str, Any]) -> dict[str, Any]:
    """One table row from one job's result (figures straight from its report.json)."""
    rep = r.get("report") or {}
    row: dict[str, Any] = {"job": r["job"]}
    for k, v in r["config"].items():
        row[f"cfg.{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
    status = r.get("status") or _get(rep, ("run", "status")) or ("failed" if r["rc"] else "no report")
    row.update(status=status, exit_code=r["rc"], config_hash=_get(rep, ("run", "config_hash")),
               input=_get(rep, ("input", "path")))
    for col, path in FIGURES.items():
        v = _get(rep, path)
        if v is None:
            v = 0 if col in _INT_COLS else 0.0 if col in _FLOAT_COLS else None
        row[col] = v
    for stage, lat in sorted((rep.get("latency") or {}).items()):
        row[f"lat.{stage}.p50_ns"] = lat.get("p50_ns")
        row[f"lat.{stage}.p99_ns"] = lat.get("p99_ns")
    row.update(overrides=" ".join(r["overrides"]), run_dir=r["run_dir"], host=r["host"], wall_s=r["wall_s"])
    return row


def table(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    rows = [row_of(r) for r in sorted(results, key=lambda r: r["job"])]
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    lat = sorted(c for c in cols if c.startswith("lat."))
    tail = ["overrides", "run_dir", "host", "wall_s"]
    cols = [c for c in cols if c not in lat and c not in tail] + lat + tail
    return cols, [{c: row.get(c) for c in cols} for row in rows]


def write_table(cols: list[str], rows: list[dict[str, Any]], out: Path) -> dict[str, Path]:
    """``sweep.parquet`` (pyarrow; typed columns) and ``sweep.csv``."""
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    paths = {"csv": out / "sweep.csv"}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    arrays = {}
    for c in cols:
        vals = [r[c] for r in rows]
        try:
            arrays[c] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one column: keep the text
            arrays[c] = pa.array([None if v is None else str(v) for v in vals], type=pa.string())
    pq.write_table(pa.table(arrays), out / "sweep.parquet")
    paths["parquet"] = out / "sweep.parquet"
    return paths


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.4f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def write_compare(results: list[dict[str, Any]], out: Path, log: Callable[[str], None] = print) -> Path | None:
    """``compare.html``: the runs side by side by ``hftbot compare`` (config differences, PnL, fills,
    rejects by reason, latency percentiles and chart), for the jobs whose run directory is on this
    machine with a report. None when there is none (e.g. every job ran on another Ray node)."""
    dirs = [r["run_dir"] for r in sorted(results, key=lambda r: r["job"])
            if r.get("report") and (Path(r["run_dir"]) / "report.json").is_file()]
    if not dirs:
        return None
    try:
        from pipeline.compare import load_runs, render_html
    except ImportError:
        return None
    try:
        page = render_html(load_runs(dirs))
    except ValueError as exc:  # CompareError / ReportError: one run cannot be read
        log(f"sweep      compare.html not written: {exc}")
        return None
    (out / "compare.html").write_text(page)
    return out / "compare.html"


def write_html(cols: list[str], rows: list[dict[str, Any]], out: Path, title: str,
               compare: str | None = None) -> Path:
    """One self-contained page: the swept values and every figure, one row per job, the best
    total PnL marked; columns whose values differ between jobs are highlighted. ``compare``: the
    side-by-side page of the same runs, linked."""
    show = [c for c in cols if c not in ("run_dir", "host")]
    differs = {c for c in show if len({json.dumps(r[c], default=str) for r in rows}) > 1}
    best = max((r["pnl_total_usd"] for r in rows if r["status"] == "completed"), default=None)
    head = "".join(f'<th class="{"d" if c in differs else ""}">{html.escape(c)}</th>' for c in show)
    body = []
    for r in rows:
        mark = ' class="best"' if best is not None and r["status"] == "completed" and r["pnl_total_usd"] == best else ""
        cells = "".join(f'<td class="{"num" if isinstance(r[c], (int, float)) else ""}">{html.escape(_fmt(r[c]))}</td>'
                        for c in show)
        body.append(f"<tr{mark}>{cells}</tr>")
    link = (f' The runs side by side (config differences, rejects by reason, latency chart): '
            f'<a href="{html.escape(compare)}">{html.escape(compare)}</a>.' if compare else "")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ccc; padding: 3px 6px; white-space: nowrap; }}
th {{ background: #eee; position: sticky; top: 0; }} th.d {{ background: #ffe9a8; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }} tr.best td {{ background: #e3f6e3; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(rows)} jobs; yellow columns differ between jobs; green row: the best total PnL of the completed runs.
Figures are copied from each run's report.json (money in US dollars, latency in ns).{link}</p>
<table id="sweep"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
    (out / "sweep.html").write_text(page)
    return out / "sweep.html"


# --- entry points ---------------------------------------------------------------------------------

def sweep(overrides: Sequence[str], *, config_name: str = "replay", out: str | os.PathLike | None = None,
          captures: Sequence[str] = (), launcher: str = "local", address: str | None = None,
          num_cpus: int | None = None, cpus_per_job: float = 1.0, timeout_s: float | None = None,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a sweep; returns {"out", "jobs", "columns", "rows", "files"}. Raises ``SweepError``."""
    if launcher not in ("local", "ray"):
        raise SweepError(f"--launcher {launcher}: choose local or ray")
    if cpus_per_job <= 0:
        raise SweepError(f"--cpus-per-job {cpus_per_job}: must be > 0")
    out_dir = Path(out) if out else Path("multirun") / dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S-sweep")
    out_dir = out_dir.resolve()
    if launcher == "ray":
        _probe(address)
    jobs = plan(config_name, overrides, out_dir, captures, timeout_s, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(
        {"config_name": config_name, "launcher": launcher, "overrides": list(overrides), "captures": list(captures),
         "jobs": [{"job": j.index, "overrides": j.overrides, "run_dir": j.run_dir} for j in jobs]}, indent=2))
    log(f"sweep      {len(jobs)} job{'s' if len(jobs) != 1 else ''} ({config_name}, {launcher} launcher) -> {out_dir}")
    if launcher == "ray":
        results = launch_ray(jobs, address, num_cpus, cpus_per_job, log)
    else:
        results = launch_local(jobs, log)
    cols, rows = table(results)
    files = write_table(cols, rows, out_dir)
    compare = write_compare(results, out_dir, log)
    if compare is not None:
        files["compare"] = compare
    files["html"] = write_html(cols, rows, out_dir, f"hftbot sweep: {config_name}, {len(rows)} jobs",
                               compare.name if compare is not None else None)
    return {"out": out_dir, "jobs": jobs, "columns": cols, "rows": rows, "files": files}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=V1,V2",
                   help="Hydra overrides in multirun syntax (k=a,b  k=range(1,4)  group=glob(*)); every sweep "
                        "is an axis, the jobs are their product")
    p.add_argument("--config-name", default="replay", help="conf/NAME.yaml each job starts from (default replay)")
    p.add_argument("--captures", nargs="+", default=[], metavar="FILE",
                   help="the data axis: replay each job on each of these captures (feed.path)")
    p.add_argument("--launcher", choices=("local", "ray"), default="local",
                   help="local: one job after another here (default); ray: Ray tasks (local instance or --address)")
    p.add_argument("--address", default=None, help="a running Ray cluster (e.g. auto, or ray://head:10001)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--cpus-per-job", type=float, default=1.0, help="CPUs Ray reserves for each job (default 1)")
    p.add_argument("--timeout-s", type=float, default=None, help="stop a job that runs longer than this")
    p.add_argument("--out", default=None, help="sweep directory (default multirun/DATE/TIME-sweep)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs (checked) and stop")


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        if args.dry_run:
            out = Path(args.out or "multirun/dry-run").resolve()
            for j in plan(args.config_name, args.overrides, out, args.captures, args.timeout_s):
                print(f"job {j.index:03d}  {' '.join(j.overrides)}")
            return 0
        res = sweep(args.overrides, config_name=args.config_name, out=args.out, captures=args.captures,
                    launcher=args.launcher, address=args.address, num_cpus=args.num_cpus,
                    cpus_per_job=args.cpus_per_job, timeout_s=args.timeout_s)
    except SweepError as exc:
        print(f"hftbot sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the running job got the same Ctrl-C and stopped in order
        print("hftbot sweep: interrupted", file=sys.stderr)
        return 130
    rows = res["rows"]
    failed = [r for r in rows if r["status"] not in ("completed", "killed")]
    for name, path in res["files"].items():
        print(f"sweep      {name:8s} {path}")
    print(f"sweep      {len(rows) - len(failed)} of {len(rows)} jobs completed")
    return 1 if failed else 0
