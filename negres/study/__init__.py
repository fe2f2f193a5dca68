"""The command line's study: one config file in, one workdir of results out.

``config`` declares the study's fields and defaults and validates a config before anything
loads or compiles; ``conditions`` expands a config's conditions into one config each;
``experiment`` is the glue (conditions -> tasks and models -> one training call per group
-> the configured evaluators -> statistics -> report), built on the public library like
any other user; ``workdir`` holds the workdir's files (atomic JSON writes, resumable
checkpoints, refusing another run's directory). ``main.py`` is a thin flag parser over
:func:`negres.study.experiment.run`.
"""
