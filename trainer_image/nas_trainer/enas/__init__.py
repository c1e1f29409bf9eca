"""ENAS weight sharing (Pham et al. 2018; docs/papers.md §4, §7): supernets and the search loop.

A supernet holds the weights of every (node, input, operation) of one space's
DAG; ``forward(x, tokens)`` runs exactly the sampled child's subgraph, so only
the weights that child uses receive gradients. ``search`` alternates SGD on the
shared weights with REINFORCE on the controller and derives the final
architecture; ``nas_trainer.train_enas.run_enas`` is the trainer's entry point.
"""
