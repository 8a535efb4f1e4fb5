"""convae: the assignment's convolutional auto-encoder on MNIST, its training engine and analysis.

The core never imports streamlit or plotly; the dashboard (dashboard.py, ui/, app_pages/) and the
command line (`python -m convae`) both call it.
"""

from convae.model import AutoEncoder, Decoder, Encoder
from convae.train import TrainConfig

__all__ = ["AutoEncoder", "Decoder", "Encoder", "TrainConfig"]
