"""Post-classification change: two class maps of one place compared pixel by pixel, block by block.

``inputs`` opens the maps (schema, code lookup, confidence), ``grid`` puts AFTER on BEFORE's grid and
finds the overlap, ``matrix`` accumulates the from-to transitions in pixels and area, ``outputs`` writes
the tables, the change COG and the polygons, ``report`` draws the pictures and the page, and ``run``
puts them together (``compare_maps``) for ``landseg change``.
"""
