"""gunicorn configuration of the example cache: ``gunicorn -c gunicorn.conf.py``.

``kill -USR2`` makes gunicorn execute the same command line again, so the release to
load is read from a file (``RELEASE`` beside this one, or the file named by
``CACHE_RELEASE_FILE``): the deploy step is to write the new release number into it,
then signal the master. Options given on the command line override these.
"""

import os
from pathlib import Path

from statemigrate.integrations.gunicorn import server_hooks

release_file = Path(os.environ.get("CACHE_RELEASE_FILE") or Path(__file__).with_name("RELEASE"))
release = release_file.read_text().strip()
if release not in {"1", "2"}:
    raise SystemExit(f"{release_file}: expected release 1 or 2, found {release!r}")

wsgi_app = f"app_v{release}:application"
bind = "127.0.0.1:8000"
pidfile = "gunicorn.pid"
# The application (and the state it starts from) is loaded once in the master.
preload_app = True
worker_class = "gthread"
threads = 4
workers = 1

# The state moves worker to worker at each kill -USR2. A rollback (2 -> 1) drops the
# expiry times release 1 cannot hold, hence allow_lossy. A GET moves the entry it reads
# to the end of the cache (its LRU order), in one of the worker's threads: it changes
# the state, so no method is safe to serve beside the export, and the pause holds
# reads too.
globals().update(server_hooks(f"app_v{release}:service", allow_lossy=True, safe_methods=()))
