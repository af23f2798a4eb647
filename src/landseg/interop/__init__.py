"""landseg models for other tools: Deepness (QGIS) metadata on ONNX exports, STAC MLM model items."""
