"""Published models that ship with landseg, ready to predict with: ``load_zoo_model("dynamic-world")``.

Listing them (``list_zoo_models``) loads no torch; loading one gives a ``LoadedModel`` like a trained
checkpoint's. ``docs/ZOO.md`` describes each model, its licence and when not to use it.
"""

from landseg.zoo.registry import ZOO, ZooClass, ZooModel, get_zoo_model, list_zoo_models, load_zoo_model

__all__ = ["ZOO", "ZooClass", "ZooModel", "get_zoo_model", "list_zoo_models", "load_zoo_model"]
