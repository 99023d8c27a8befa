import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Corpus files that model configs refer to (yt_bias.core.corpus): in a folder of this session, not the user's cache.
os.environ.setdefault("YT_BIAS_CORPUS_DIR", tempfile.mkdtemp(prefix="yt_bias_corpora_"))

import yt_bias._keras  # noqa: E402,F401  (selects Keras 2 before anything imports tensorflow)
