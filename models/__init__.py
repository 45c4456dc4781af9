"""Keras 3 model builders (keras.layers / keras.ops only: no tf.*, no data code).

Importing the package registers the custom layers and losses, so ``keras.saving.load_model`` finds them.
"""

from models import cells, heads, losses, ntm  # noqa: F401
from models import speech  # noqa: F401,E402  (speech_ctc: FrameMask, SubsampleMask, PackedCTCLoss)
