"""Model weights shipped inside the package (data only, no code).

Each weights file ``NAME`` sits beside ``NAME.sha256`` (``<hex digest>  NAME``), which
``sagittal.landmarks.weights`` checks at load. ``landmarks.pt`` is the radiograph landmark model
(model card: ``models/README.md`` in the repository).
"""
