"""Local mode: ``kubenas run`` drives the operator's search loop with trials as local processes.

``launcher`` runs trainer processes, ``runner`` wires loop, status API, launcher and signals,
``output`` keeps the run folder, ``progress`` draws the progress bar, ``genotype_graph`` and
``plots`` draw the best architecture and the reward curve, ``summary`` prints a run folder.
"""
