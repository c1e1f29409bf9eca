"""The Kubernetes side of kubenas: kopf handlers, Jobs, NASTrials, checkpoints in ConfigMaps.

The search itself (``nas_operator.loop.SearchLoop``) knows nothing of
Kubernetes; the modules here adapt it: ``launcher`` turns launch requests into
NASTrials and Jobs, ``observe`` turns Job and Pod changes back into loop
calls, ``status`` mirrors the loop into object statuses and Events,
``controller`` runs one NASSearch, ``handlers`` wires that to kopf, and
``main`` runs kopf and the status API in one event loop.
"""
