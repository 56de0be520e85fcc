"""Everything only training the landmark model needs: phantom training data (``data``), targets
(``targets``), losses (``losses``) and the time-bounded training loop (``loop``).

The runtime (``sagittal.landmarks``) never imports this package; ``scripts/train_landmarks.py``
is a thin wrapper over ``loop.main``.
"""
