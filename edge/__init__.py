"""Edge scream detector: the part that runs on the Raspberry Pi.

Only numpy and a TFLite runtime are needed here; pyaudio and gpiozero are imported lazily
when live capture or GPIO outputs are used. Nothing in this package imports TensorFlow.
"""

__version__ = "0.1.0"
