"""`python -m mysql_redis_cache`: the `mrc` command."""

from ._cli import run

run()
