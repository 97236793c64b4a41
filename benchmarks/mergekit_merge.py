"""Run one mergekit merge the way `mergekit-yaml CONFIG OUT --lazy-unpickle --no-copy-tokenizer` does, timed.

Runs inside mergekit's own environment (benchmarks/.venv-mergekit), so it imports nothing from mergefront.
Prints one JSON line: seconds to import mergekit, and seconds spent in `run_merge` (read, merge, write).

    benchmarks/.venv-mergekit/bin/python benchmarks/mergekit_merge.py CONFIG.yml OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time


def main(config_path: str, out_dir: str) -> None:
    start = time.perf_counter()
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    imported = time.perf_counter()
    with open(config_path, encoding="utf-8") as fh:
        config = MergeConfiguration.model_validate(yaml.safe_load(fh))
    options = MergeOptions(lazy_unpickle=True, copy_tokenizer=False, write_model_card=False, quiet=True)
    begin = time.perf_counter()
    run_merge(config, out_dir, options=options)
    end = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "merge_s": end - begin}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
