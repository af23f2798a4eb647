"""``landseg suggest``: which windows of unlabelled imagery to label next (active learning).

Each scene is mapped by the one inference core with an uncertainty layer (``predict_scene``, written to
``OUT/maps``, so the ranking can be checked in QGIS); ``windows`` scores a grid of square windows by their
mean uncertainty and picks the most uncertain ones under a spacing rule; ``outputs`` writes them as a
GeoPackage of boxes, a ranked CSV and an HTML gallery (image, prediction, uncertainty); ``run`` ties them.
"""
