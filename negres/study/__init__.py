"""The command line's study: one config file in, one workdir of results out.

``experiment.run`` is the pipeline: ``prepare`` validates and completes the config once
and builds every condition (task, model, optimizer, evaluators), ``memory`` refuses a
study that cannot fit, ``lifecycle`` claims the workdir (``extension`` for ``--extend``),
``group_training`` trains each group of conditions in one :func:`negres.train` call per
look, ``evaluation`` runs each condition's evaluators, ``analysis`` computes the
statistics, and the results are written and reported. ``config`` declares the study's
fields and defaults, ``conditions`` expands a config's conditions, ``workdir`` holds the
workdir's files (locks, overwrites that finish whole or roll back). ``main.py`` is a thin
flag parser over :func:`negres.study.experiment.run`.

Layer: study. The command line's user of the library; imports every layer below it, and
only ``main.py`` imports it.
"""
