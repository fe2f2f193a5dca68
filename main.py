"""negres command line: ``python main.py --config configs/NAME.py --workdir DIR``.

On several hosts, run the same command on every host with ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (or ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), or ``--distributed`` where JAX detects the
cluster by itself (Cloud TPU pods, SLURM, Open MPI).
"""

import errno
import logging as std_logging
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from negres import sharding
from negres.errors import ConfigError
from negres.evaluators import evaluator_fields, moved_field
from negres.files import is_disk_full, says_disk_full
from negres.study import experiment, lifecycle
from negres.study.workdir import WorkdirError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file (configs/NAME.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.json, report.md and plots.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the results already in --workdir.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Rebuild report.md and plots from --workdir's results.json; no training."
)
_EXTEND = flags.DEFINE_bool(
    "extend", False,
    "Add seeds to --workdir's finished study: train only the seeds past its num_seeds (the "
    "config may change num_seeds and nothing else) and rebuild results and report.")
_ROLLBACK = flags.DEFINE_bool(
    "rollback", False,
    "Undo an unfinished --overwrite into --workdir: put the earlier run's results back.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-host: host:port of process 0 (jax.distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host on a cluster JAX detects itself (TPU pod, SLURM, MPI).")
flags.mark_flags_as_required(["workdir"])


def config_error(e: BaseException, path: str, argv: list[str] | None = None) -> str:
    """One line for a config file that failed to load or to take an override given in
    ``argv`` (default: this command line)."""
    detail = " ".join(str(e).split())
    if isinstance(e, AttributeError) and "get_config" in detail:
        return (f"--config={path!r} defines no get_config(); a config file's get_config() "
                "returns an ml_collections.ConfigDict (see configs/default.py)")
    if isinstance(e, AttributeError):
        hints = []
        for name in re.findall(r"'(\w+)'", detail):
            for override in _overrides(name, sys.argv[1:] if argv is None else argv):
                section = override.removeprefix("--config.").rsplit(".", 1)[0]
                if section == "evaluation" and (hint := moved_field(name, evaluator_fields())):
                    hints.append(f"{override} is {hint}")
                elif section.startswith("evaluation.") and section.count(".") == 1:
                    hints.append(
                        f"{override}: {section} holds only the fields its config file sets; "
                        "build an instance section with negres.evaluators.instance_section("
                        "EVALUATOR, ...), which sets every field")
        return (f"a --config.* override names a field the config lacks: {detail}"
                + (f" ({'; '.join(hints)})" if hints else ""))
    return f"--config={path!r} could not be loaded: {type(e).__name__}: {detail}"


def _overrides(name: str, argv: list[str]) -> list[str]:
    """The ``--config.PATH`` flags of ``argv`` whose last part is ``name``."""
    flags_given = (a.split("=", 1)[0] for a in argv if a.startswith("--config."))
    return [f for f in flags_given if f.rsplit(".", 1)[-1] == name]


def load_config() -> ConfigDict:
    """The config with its overrides applied, or a one-line error saying what is wrong."""
    flag = flags.FLAGS["config"]
    if not flag.present:
        sys.exit("negres: error: --config is required (e.g. --config configs/default.py)")
    path = config_flags.get_config_filename(flag)
    # ml_collections passes what follows "file.py:" to get_config (configs/NAME.py:variant).
    if not os.path.isfile(path) and not os.path.isfile(path.split(":", 1)[0]):
        sys.exit(f"negres: error: --config={path!r}: no such file (e.g. configs/default.py)")
    try:
        config = _CONFIG.value
        if config is not None:
            config.keys()  # config_flags loads lazily; make load and override errors surface
    except Exception as e:
        sys.exit(f"negres: error: {config_error(e, path)}")
    if not isinstance(config, ConfigDict):
        sys.exit(f"negres: error: --config={path!r}: get_config() returned "
                 f"{type(config).__name__ if config is not None else 'None'}; it must return an "
                 "ml_collections.ConfigDict (see configs/default.py)")
    return config


def config_argument(argv: list[str]) -> str:
    """The value given to --config in ``argv`` (as ``--config=PATH`` or ``--config PATH``)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.removeprefix("--config=")
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return ""


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every error (bad flag, broken config file) made one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # ml_collections embeds the config file's traceback; its first and last lines say
        # which flag failed and why.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        sys.exit("negres: error: " + (lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"))
    except Exception as e:
        sys.exit(f"negres: error: {config_error(e, config_argument(argv))}")


def quiet_orbax(record: std_logging.LogRecord) -> bool:
    """Keep orbax's warnings but not its INFO lines: it logs several per checkpoint saved.
    Its disk-full errors (a traceback per worker thread) become negres's one line."""
    if "orbax" not in record.pathname:
        return True
    return record.levelno >= std_logging.WARNING and not says_disk_full(record.getMessage())


# Flags that choose what a run does; no two of them go together.
_MODES = {"overwrite": _OVERWRITE, "report_only": _REPORT_ONLY, "extend": _EXTEND,
          "rollback": _ROLLBACK}
_MODE_MEANINGS = {"overwrite": "replaces the results", "report_only": "trains nothing",
                  "extend": "adds seeds to the results", "rollback": "restores earlier results"}


def usage_problem(argv: list[str]) -> str | None:
    """What is wrong with the command line beyond single flags (an argument that is not a
    flag, flags that exclude each other), as one line; ``None``: nothing."""
    if len(argv) > 1:
        extra = " ".join(repr(a) for a in argv[1:])
        return (f"unexpected argument(s) {extra}: every argument is a flag, --name=value or "
                "--name value (e.g. --config configs/default.py --workdir runs/NAME)")
    given = [name for name, flag in _MODES.items() if flag.value]
    if len(given) > 1:
        first, second = given[:2]
        return (f"--{first} and --{second} exclude each other: --{first} "
                f"{_MODE_MEANINGS[first]}, --{second} {_MODE_MEANINGS[second]}; give one")
    return None


def os_error_line(e: OSError) -> str | None:
    """One line for an OSError that says what the user must change, or ``None``."""
    where = e.filename or _WORKDIR.value
    if is_disk_full(e):
        return (f"no space left on the device of {where!r}; free some space and rerun the same "
                "command")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{where!r} is not writable ({e.strerror}); choose a --workdir you can write"
    if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return f"--workdir={_WORKDIR.value!r} cannot be used ({e.strerror}); choose another"
    return None


def main(argv: list[str]) -> None:
    problem = usage_problem(argv)
    if problem:
        sys.exit(f"negres: error: {problem}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(quiet_orbax)
    # Before anything initialises JAX: on a CPU, one device per core for the seeds mesh.
    sharding.use_all_cores()
    if _DISTRIBUTED.value:
        sharding.initialize_auto()
    else:
        sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                        _PROCESS_ID.value)
    try:
        if _REPORT_ONLY.value or _ROLLBACK.value:
            if sharding.is_main_process():
                if _ROLLBACK.value:
                    lifecycle.roll_back(_WORKDIR.value)
                else:
                    lifecycle.rebuild_report(_WORKDIR.value)
            return
        experiment.run(load_config(), _WORKDIR.value, overwrite=_OVERWRITE.value,
                       extend=_EXTEND.value)
    except (ConfigError, WorkdirError) as e:
        sys.exit(f"negres: error: {e}")
    except OSError as e:
        line = os_error_line(e)
        if line is None:
            raise
        sys.exit(f"negres: error: {line}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
