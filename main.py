"""negres command line: ``python main.py --config configs/NAME.py --workdir DIR``.

On several hosts, run the same command on every host with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (or ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), or ``--distributed`` where JAX detects the
cluster by itself (Cloud TPU pods, SLURM, Open MPI).
"""

import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from negres import sharding
from negres.errors import ConfigError
from negres.study import experiment
from negres.study.workdir import WorkdirError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file (configs/NAME.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json, report.md and plots.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the results already in --workdir.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Rebuild report.md and plots from --workdir's results.json; no training."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0 (jax.distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host on a cluster JAX detects itself (TPU pod, SLURM, MPI).")
flags.mark_flags_as_required(["workdir"])


def load_config() -> ConfigDict:
    """The config with its overrides applied, or a one-line error saying what is wrong."""
    path = config_flags.get_config_filename(flags.FLAGS["config"])
    # ml_collections passes what follows "file.py:" to get_config (configs/NAME.py:variant).
    if not os.path.isfile(path) and not os.path.isfile(path.split(":", 1)[0]):
        sys.exit(f"negres: error: --config={path!r}: no such file (e.g. configs/default.py)")
    try:
        config = _CONFIG.value
        config.keys()  # config_flags loads lazily; make load and override errors surface here
    except AttributeError as e:
        sys.exit(f"negres: error: a --config.* override names a field the config lacks: {e}")
    except Exception as e:
        detail = " ".join(str(e).split())
        sys.exit(
            f"negres: error: --config={path!r} could not be loaded: {type(e).__name__}: {detail}"
        )
    return config


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every error (bad flag, broken config file) made one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # ml_collections embeds the config file's traceback; its first and last lines say
        # which flag failed and why.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        sys.exit("negres: error: " + (lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"))
    except AttributeError as e:
        sys.exit(f"negres: error: a --config.* override names a field the config lacks: {e}")
    except Exception as e:
        detail = " ".join(str(e).split())
        sys.exit(f"negres: error: --config could not be loaded: {type(e).__name__}: {detail}")


def quiet_orbax(record: std_logging.LogRecord) -> bool:
    """Keep orbax's warnings but not its INFO lines: it logs several per checkpoint saved."""
    return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(quiet_orbax)
    if _DISTRIBUTED.value:
        sharding.initialize_auto()
    else:
        sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                        _PROCESS_ID.value)
    try:
        if _REPORT_ONLY.value:
            if sharding.is_main_process():
                experiment.rebuild_report(_WORKDIR.value)
            return
        if flags.FLAGS["config"].value is None:
            sys.exit("negres: error: --config is required (e.g. --config configs/default.py)")
        experiment.run(load_config(), _WORKDIR.value, overwrite=_OVERWRITE.value)
    except (ConfigError, WorkdirError) as e:
        sys.exit(f"negres: error: {e}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
