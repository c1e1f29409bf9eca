"""``python -m nas_trainer.export``: a saved model (or a trial's architecture) as files that run
without kubenas: a ``torch.export`` program, a plain-torch module file with its weights, and
ONNX where the ``onnx`` package is installed. ``kubenas export RUN_DIR`` runs this."""
