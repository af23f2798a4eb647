"""Class maps without a model: writing them (COGs), measuring them (areas), cleaning them and their polygons."""
