"""Keras 3 model builders (keras.layers / keras.ops only: no tf.*, no data code).

Importing the package registers the custom layers and losses, so ``keras.saving.load_model`` finds them.
"""

from models import attention, cells, chars, heads, losses, memory, ngrams, ntm, speech, speech_autoencoder  # noqa: F401
