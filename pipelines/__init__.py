"""Data → train → evaluate → export, one runnable module per task (``python -m pipelines.<task>``).

Importing this package keeps TensorFlow's start-up noise (CUDA, oneDNN, TensorRT lines) out of the terminal
unless the user has set ``TF_CPP_MIN_LOG_LEVEL`` themselves, and selects Keras' TensorFlow backend.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
