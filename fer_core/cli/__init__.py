"""The command line, `python -m fer_core` (or `fer-studio`): one module per group of commands,
each adding its subcommands to the parser that `main.py` builds.

Bad input gives one clear line on stderr and exit status 1, never a traceback.
"""
