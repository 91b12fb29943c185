"""Training: the trainer entry point, its configuration, backends (local, RunPod) and the cost model.

Nothing here is imported by the pure data layers; torch and transformers load lazily inside.
"""
