"""features layer: feature definitions and the pipelines that compute them.

``registry`` declares every feature once (name, entity, dtype, description, checks);
``late_shipment`` builds the offline frame for order lines at entry from ERP history
(``history`` loads it, ``asof`` and ``calendar`` do the point-in-time arithmetic); ``online``
computes the same features for one draft order from an in-memory index of that history
(``stream_index``), sharing every definition with the offline frame; ``schema``
validates a frame and ``store`` writes it with its manifest; ``build`` and ``cli`` are what
``erpx features`` runs. Importing this package loads nothing heavy.
"""
