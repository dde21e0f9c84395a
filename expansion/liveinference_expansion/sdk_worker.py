"""`python -m liveinference_expansion.sdk_worker --worker-id ID --control-endpoint HOST:PORT`.

What the private worker pool starts for each StartWorker request: Beam's `SdkHarness`
connected to the runner's control endpoint. The values arrive as arguments, never as source
code, and are checked again here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from apache_beam.runners.worker.sdk_worker import SdkHarness

from liveinference_expansion.worker_pool import check_endpoint

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one SDK worker until the runner closes its control channel.

    Args:
        argv: `--worker-id ID --control-endpoint HOST:PORT`; defaults to `sys.argv[1:]`.

    Returns:
        The exit status (2 for a malformed endpoint).
    """
    parser = argparse.ArgumentParser(prog="liveinference_expansion.sdk_worker")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--control-endpoint", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_endpoint(args.control_endpoint, "--control-endpoint")
    except ValueError as error:
        logging.getLogger(__name__).error("%s", error)
        return 2
    SdkHarness(args.control_endpoint, worker_id=args.worker_id, state_cache_size=0,
               data_buffer_time_limit_ms=-1).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
