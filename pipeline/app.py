"""The Hydra application behind ``hftbot run`` / ``make run``."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from bridges.fix.bridge import FixError
from pipeline.backends import BackendError
from pipeline.config import ConfigError, register
from replay.capture import CaptureError
from pipeline.run import run

register()
#: the Hydra config root, conf/ at the top of the repository (the package is installed editable)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(config_path=CONF_DIR, config_name="replay", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run(cfg, out_dir=out_dir, log=print)
    except (ConfigError, BackendError, CaptureError, FileNotFoundError, FixError, OmegaConfBaseException) as exc:
        print(f"hftbot: error: {exc}", file=sys.stderr)
        sys.exit(2)


def run_cli(argv: list[str]) -> None:
    """Run the Hydra app with ``argv`` (overrides, ``--config-name``...) as its command line."""
    sys.argv = ["hftbot run", *argv]
    main()
