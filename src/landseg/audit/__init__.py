"""``landseg audit``: label issues of a labelled split, found with out-of-sample probabilities.

- ``folds``: the split's images in K seeded folds, one model trained per fold with the config's recipe;
- ``probabilities``: each image's probabilities from the inference core (a model that did not see it),
  cached on disk one image at a time, and the warning when a checkpoint saw the audited images;
- ``issues``: cleanlab's confident learning over the cached images, streamed (thresholds, issue count,
  flagged pixels), and cleanlab's per-image label-quality score;
- ``regions``: flagged pixels as connected regions with their given and likely class, size and polygon;
- ``outputs``: ranked CSVs, the GeoPackage, per-class shares and the given-vs-likely confusion plot;
- ``gallery``: the worst images with label, prediction and the regions outlined, as one HTML page;
- ``run``: ``audit()``, the whole audit without the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from landseg.lazy import lazy_exports

if TYPE_CHECKING:  # the names below as type checkers see them ("X as X": re-exported)
    from landseg.audit.folds import assign_folds as assign_folds
    from landseg.audit.run import AuditResult as AuditResult
    from landseg.audit.run import audit as audit

_EXPORTS = {
    "AuditResult": "landseg.audit.run",
    "audit": "landseg.audit.run",
    "assign_folds": "landseg.audit.folds",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
