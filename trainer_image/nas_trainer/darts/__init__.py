"""DARTS (Liu, Simonyan & Yang 2019; docs/papers.md §8): differentiable search over the micro cell.

``supernet`` relaxes the enas-micro cell (a softmax-weighted mixed operation on
every edge, one alpha matrix per cell type), ``bilevel`` holds the first- and
second-order architecture steps, ``derive`` turns alpha into an enas-micro
token list, ``collective`` averages gradients across workers (gloo or NCCL),
``workers`` starts local ones, and ``search`` is the one-trial loop
(``python -m nas_trainer`` with ``mode: darts``).
"""
