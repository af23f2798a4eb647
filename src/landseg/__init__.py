"""landseg: land-cover maps from satellite and aerial imagery by semantic segmentation."""

__version__ = "0.1.0"
