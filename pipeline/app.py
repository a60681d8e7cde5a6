"""The Hydra application behind ``hftbot run`` / ``make run``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline.config import ConfigError, register
from pipeline.run import run

register()
log = logging.getLogger("hftbot")


@hydra.main(config_path="../conf", config_name="replay", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run(cfg, out_dir=out_dir, log=print)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"hftbot: error: {exc}", file=sys.stderr)
        sys.exit(2)


def run_cli(argv: list[str]) -> None:
    """Run the Hydra app with ``argv`` (overrides, ``--config-name``...) as its command line."""
    sys.argv = ["hftbot run", *argv]
    main()
