"""A parity worker: one job on one backend in one precision, in a process of its own, which
common/parity/workers.py starts. Usage: python -m common.parity JOB_DIR BACKEND PRECISION
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common.parity import measurement, structure
from common.parity.workers import Job

# a job's kind -> the work a worker does for it
KINDS = {"measure": measurement.work, "structure": structure.work}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m common.parity", description="a parity worker (see common.parity.workers)"
    )
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("backend")
    parser.add_argument("precision")
    args = parser.parse_args()
    job = Job.open(args.job_dir, args.backend, args.precision)
    KINDS[job.spec["kind"]](job)


if __name__ == "__main__":
    main()
