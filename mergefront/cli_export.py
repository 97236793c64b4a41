"""`mergefront export`: an evaluation as a mergekit YAML and/or a checkpoint folder, from the local database (merged
here, with a progress bar) or from a server (its YAML, and its checkpoint downloaded as a zip and unpacked)."""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

from mergefront.client import Client


def _write_yaml(evaluation_id: int, text: str, target: str) -> None:
    if target == "-":
        print(text)
        return
    Path(target).write_text(text)
    print(f"evaluation {evaluation_id}: mergekit YAML written to {target}")


def export_local(db: str | None, evaluation_id: int, mergekit: str | None, checkpoint: str | None) -> None:
    """Export from the local database: the YAML, and the merge redone here and written to `checkpoint`."""
    from mergefront.service.db import make_engine, make_session_factory, session_scope
    from mergefront.service.export import export_source
    from mergefront.service.settings import Settings

    settings = Settings(database_url=db) if db else Settings()
    with session_scope(make_session_factory(make_engine(settings.resolved_database_url))) as s:
        source = export_source(session=s, evaluation_id=evaluation_id, settings=settings)
    if mergekit:
        _write_yaml(evaluation_id, source.mergekit_yaml(), mergekit)
    if checkpoint:
        path = source.materialize(Path(checkpoint), progress=True)
        print(f"evaluation {evaluation_id}: checkpoint written to {path}")


def export_remote(client: Client, evaluation_id: int, mergekit: str | None, checkpoint: str | None) -> None:
    """Export through a server: its YAML, and its checkpoint zip downloaded (with a progress bar) and unpacked."""
    if mergekit:
        text = client._send("GET", f"/v1/evaluations/{evaluation_id}/export/mergekit").text
        _write_yaml(evaluation_id, text, mergekit)
    if checkpoint:
        target = Path(checkpoint)
        with tempfile.TemporaryDirectory(prefix="mergefront-export-") as work:
            archive = Path(work) / "checkpoint.zip"
            _download(client, f"/v1/evaluations/{evaluation_id}/export/checkpoint.zip", archive)
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(target)
        print(f"evaluation {evaluation_id}: checkpoint written to {target}")


def _download(client: Client, path: str, target: Path) -> None:
    from tqdm import tqdm

    print("the server merges the checkpoint and zips it; the download starts when it is ready", file=sys.stderr)
    with client._stream("GET", path, timeout=None) as response, target.open("wb") as out, \
            tqdm(total=int(response.headers.get("content-length", 0)) or None, unit="B", unit_scale=True,
                 desc="download") as bar:
        for chunk in response.iter_bytes():
            out.write(chunk)
            bar.update(len(chunk))
