"""docker/smoke.sh's last step: the job submitted to the API-only replica was run by the other one, on the Ray
workers (not the head), and both replicas give the same finished job and front; the two API tokens given as
secret files were stored once each, though both replicas stored them as they started."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import httpx

from mergefront.client import Client


def main(runner_url: str, api_only_url: str, admin_token_file: str) -> int:
    admin = {"Authorization": f"Bearer {Path(admin_token_file).read_text().strip()}"}
    response = httpx.get(f"{api_only_url}/v1/tokens", headers=admin, timeout=30)
    response.raise_for_status()
    stored = response.json()
    names = Counter((t["name"], t["scope"]) for t in stored if t["revoked_at"] is None)
    assert names == Counter({("api", "write"): 1, ("admin", "admin"): 1}), names
    with Client(runner_url) as runner, Client(api_only_url) as api_only:
        job_id = api_only.jobs()[0].id
        seen = [c.job(job_id).info() for c in (runner, api_only)]
        assert seen[0].state == seen[1].state == "completed", seen
        fronts = [c.job(job_id).pareto() for c in (runner, api_only)]
        assert fronts[0].members and [m.id for m in fronts[0].members] == [m.id for m in fronts[1].members]
        rows = api_only.job(job_id).evaluations()
        assert len(rows) == seen[0].budget and all(r.state == "completed" for r in rows), Counter(r.state for r in rows)
        nodes = Counter((r.node, (r.node_id or "")[:8]) for r in rows)
        assert len(nodes) == 2, f"expected evaluations on both Ray workers, got {nodes}"
    print(f"job {job_id}: {len(rows)} evaluations completed on {len(nodes)} nodes "
          f"({', '.join(f'{name} {ident}: {n}' for (name, ident), n in nodes.items())}); front of "
          f"{len(fronts[0].members)}, hypervolume {fronts[0].hypervolume:.6g}, the same through both replicas; "
          f"the API tokens from secret files: {', '.join(f'{n} ({s})' for n, s in names)}, stored once each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
