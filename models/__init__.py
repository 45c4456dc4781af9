"""Keras 3 model builders (keras.layers / keras.ops only: no tf.*, no data code)."""
