"""`facekp tracking sync`: send the tracking calls a dead MLflow server missed (see experiments/replay.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facekp_cli.errors import ExternalServiceError
from facekp_cli.settings import Settings


@dataclass(frozen=True)
class SyncedJournal:
    path: Path
    calls: int  # sent this time
    error: str | None = None  # why the rest is still pending
    skipped: tuple[str, ...] = ()  # "<journal>:<line>: <why>": damaged lines, never sent


@dataclass(frozen=True)
class SyncResult:
    folder: Path
    journals: tuple[SyncedJournal, ...]

    @property
    def complete(self) -> bool:
        return all(j.error is None for j in self.journals)

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(line for j in self.journals for line in j.skipped)


def run(settings: Settings, uri: str | None = None) -> SyncResult:
    """Replay every journal in tracking.pending_dir, oldest first, each into the server it was meant
    for (or `uri`); a journal that fails keeps its unsent calls and the others still go."""
    from facekp_cli.experiments import journal as journal_module
    from facekp_cli.experiments import replay

    folder = Path(settings.tracking.pending_dir)
    done: list[SyncedJournal] = []
    for journal in journal_module.pending_journals(folder):
        try:
            contents = replay.replay_journal(journal, uri, settings.tracking.timeout_s)
            done.append(SyncedJournal(journal, len(contents.ops), skipped=tuple(contents.skipped)))
        except ExternalServiceError as exc:
            done.append(SyncedJournal(journal, 0, str(exc)))
    return SyncResult(folder, tuple(done))
