"""The local backend's cluster-side ceiling: stops a cluster's JVMs once its ``ceiling_at`` has passed.

One small process per local cluster, started with it (``python -m h2o_tasks.cluster.watchdog
STATE_DIR NAME``). It reads the cluster's state file, so it needs no Airflow: a cluster whose
run was abandoned (a killed worker, the scheduler or the database down) still goes at its
ceiling. It exits when the cluster is gone.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

POLL_S = 1.0


def main(state_dir: str, name: str) -> int:
    from h2o_tasks.cluster.local import LocalBackend
    from h2o_tasks.errors import ClusterError

    backend = LocalBackend(state_dir=state_dir)
    while True:
        state = backend._load(name)
        if state is None:
            return 0  # deleted by its run's teardown or the janitor
        if state.ceiling_at and datetime.now(UTC) >= datetime.fromisoformat(state.ceiling_at):
            print(f"{datetime.now(UTC).isoformat()} cluster {name} passed its ceiling {state.ceiling_at}: stopping it",
                  flush=True)
            try:
                backend.delete(name)
                return 0
            except ClusterError as exc:  # claimed by a create or delete that still runs: the guard stays
                print(f"{datetime.now(UTC).isoformat()} could not stop {name} yet ({exc}): trying again", flush=True)
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
