"""The Hydra application behind ``hftbot run`` / ``make run``."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config import register
from pipeline.control import RC_CONFIG, RC_ERROR
from pipeline.logs import EventLog, configure
from pipeline.run import user_errors, run

register()
#: the Hydra config root, conf/ at the top of the repository (the package is installed editable)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

#: ``hftbot run`` flags that are not Hydra overrides -> the overrides they stand for
FLAGS = {"--quiet": "logging.progress=false", "-q": "logging.progress=false",
         "--json": "logging.json=true"}


@hydra.main(config_path=CONF_DIR, config_name="replay", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    lc = cfg.get("logging")
    try:
        configure(json_lines=bool(lc.json) if lc is not None else False,
                  level=str(lc.level) if lc is not None else "info")
    except ValueError as exc:
        print(f"hftbot: error: {exc}", file=sys.stderr)
        sys.exit(RC_CONFIG)
    try:
        rep = run(cfg, out_dir=out_dir, log=EventLog())
    except user_errors() as exc:
        print(f"hftbot: error: {exc}", file=sys.stderr)
        sys.exit(RC_CONFIG)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the report is written; say where to find it
        traceback.print_exc()
        print(f"hftbot: error: {type(exc).__name__}: {exc} (report in {out_dir})", file=sys.stderr)
        sys.exit(RC_ERROR)
    sys.exit(int(rep["run"]["exit_code"]))


def hydra_args(argv: list[str]) -> list[str]:
    """``hftbot run``'s own flags (``--quiet`` / ``-q``: no progress bars; ``--json``: JSON log
    lines) as the Hydra overrides they stand for; everything else as it is."""
    return [FLAGS.get(a, a) for a in argv]


def run_cli(argv: list[str]) -> None:
    """Run the Hydra app with ``argv`` (overrides, ``--config-name``...) as its command line.

    QuickFIX is imported first, before Hydra makes the run directory and before any thread
    starts: its module initialisation sets SIGINT to the default action at the C level until
    ``import_quickfix`` puts Python's handler back, so a Ctrl-C in those few milliseconds ends the
    process before anything exists. Imported later, in ``run`` (after the metrics thread and the
    run directory), a Ctrl-C in that window killed the run with no report (measured: SIGINT 20-80
    ms after ``run dir`` was printed)."""
    from bridges.fix.bridge import FixError, import_quickfix

    try:
        import_quickfix()
    except FixError:
        pass   # said again, with the config key, where a run needs the bridge
    sys.argv = ["hftbot run", *hydra_args(argv)]
    main()
