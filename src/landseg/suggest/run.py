"""``landseg suggest`` from scenes to files: map each scene with an uncertainty layer, score its windows,
choose the budget's most uncertain diverse windows and write them (``windows``, ``outputs``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.progress import track

from landseg.errors import ConfigError
from landseg.io.georef import open_without_grid_warning
from landseg.io.write import atomic_output, write_rows_csv
from landseg.maps.names import map_stems
from landseg.predict.engine import predict_scene
from landseg.predict.ensemble import Ensemble
from landseg.predict.options import DEFAULT_OPTIONS, PredictOptions
from landseg.suggest.outputs import suggestion_rows, window_figure, write_boxes, write_gallery
from landseg.suggest.windows import Candidate, choose_diverse, score_windows
from landseg.uncertainty import check_measure


@dataclass(frozen=True)
class SuggestOptions:
    budget: int = 20
    """Windows to suggest."""
    size: int = 512
    """Window side in scene pixels."""
    measure: str = "entropy"
    """Uncertainty measure, ``entropy`` or ``margin`` (``landseg.uncertainty``)."""
    spacing: int = 2
    """Suggested windows of one scene are at least this many windows apart (1: no rule)."""
    min_valid: float = 0.5
    """Windows with mapped pixels on less than this share of a full window are not offered."""
    gallery: int = 50
    """Suggestions drawn in the HTML gallery, best first."""

    def check(self) -> None:
        check_measure(self.measure)
        for name, least in (("budget", 1), ("size", 8), ("spacing", 1), ("gallery", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"--{name} must be at least {least}, got {getattr(self, name)}")
        if not 0 <= self.min_valid <= 1:
            raise ConfigError(f"--min-valid must be between 0 and 1, got {self.min_valid}")


@dataclass
class SuggestResult:
    chosen: list[Candidate]
    candidates: int
    """Windows that were offered (enough mapped pixels) over all scenes."""
    csv: Path
    boxes: Path | None
    report: Path
    summary: Path
    maps: dict[Path, dict[str, Path]] = field(default_factory=dict)


def suggest(
    scenes: Sequence[Path],
    ensemble: Ensemble,
    out_dir: str | Path,
    options: SuggestOptions = SuggestOptions(),
    prediction: PredictOptions = DEFAULT_OPTIONS,
    progress: bool = True,
) -> SuggestResult:
    """Rank windows of ``scenes`` for labelling; maps go to ``out_dir/maps``, suggestions beside them."""
    options.check()
    if not scenes:
        raise ConfigError("suggest needs at least one scene")
    out = Path(out_dir)
    prediction = replace(prediction.class_map_only(), uncertainty=options.measure)
    prediction.check()
    stems = map_stems(list(scenes), Path(os.path.commonpath([Path(s).resolve().parent for s in scenes])))
    candidates: list[Candidate] = []
    grids, maps = {}, {}
    num_classes = ensemble.num_classes
    for scene, stem in track(list(zip(scenes, stems, strict=True)), "Mapping uncertainty", disable=not progress):
        scene = Path(scene)
        written = predict_scene(scene, ensemble, out / "maps", prediction, stem=stem)
        maps[scene] = written.paths
        with open_without_grid_warning(written.paths["classes"]) as classes:
            grids[scene] = (classes.transform, classes.crs)
        uncertainty, classes_path = written.paths["uncertainty"], written.paths["classes"]
        candidates += score_windows(scene, uncertainty, classes_path, options.size, num_classes, options.min_valid)
    chosen = choose_diverse(candidates, options.budget, options.spacing)
    rows = suggestion_rows(chosen, ensemble.schema, grids)
    csv_path = write_rows_csv(out / "suggestions.csv", rows, list(rows[0]) if rows else ["rank"])
    boxes = write_boxes(out / "suggestions.gpkg", rows, grids)
    figures = []
    card_bands = list(ensemble.members[0].card.bands)
    for rank, candidate in enumerate(chosen[: options.gallery], start=1):
        path = window_figure(
            candidate, rank, maps[candidate.scene], card_bands, ensemble.schema, out / "gallery" / f"{rank:03d}.png"
        )
        figures.append((f"#{rank} {candidate.scene.name}: uncertainty {candidate.score:.3f}", path))
    notes = {
        "Choice": (
            f"{len(chosen)} of {len(candidates)} windows of {options.size} px, most uncertain first "
            f"({options.measure}), at least {options.spacing} windows apart within a scene."
        ),
        "Models": "\n".join(str(m.path) for m in ensemble.members),
    }
    report = write_gallery(out, figures, notes)
    summary = out / "suggestions.json"
    with atomic_output(summary) as temporary:
        record = {
            "options": asdict(options),
            "scenes": [str(s) for s in scenes],
            "models": [str(m.path) for m in ensemble.members],
            "windows_offered": len(candidates),
            "suggested": rows,
        }
        temporary.write_text(json.dumps(record, indent=2))
    return SuggestResult(chosen, len(candidates), csv_path, boxes, report, summary, maps)
