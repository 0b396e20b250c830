"""Training side: data validation, splits, augmentation, the Keras CNN, int8 export, evaluation.

May import `edge` (the feature contract lives there); `edge` never imports this package.
TensorFlow is imported lazily inside the functions that need it.
"""
