import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import yt_bias  # noqa: E402,F401  (selects Keras 2 before anything imports tensorflow)
