"""tinybrain 1.7.0 (PyPI), used only as a black box: its functions are called, never read."""

import numpy as np
import tinybrain
import tinybrain.downsample


def run(op, img, factor, num_mips=1, sparse=False):
    """Same calling convention as models.run; returns a list of arrays."""
    if op == "averaging":
        out = tinybrain.downsample_with_averaging(img, factor, num_mips=num_mips, sparse=sparse)
    elif op == "segmentation":
        out = tinybrain.downsample_segmentation(img, factor, sparse=sparse, num_mips=num_mips)
    elif op == "max_pooling":
        out = tinybrain.downsample_with_max_pooling(img, factor, num_mips=num_mips)
    elif op == "min_pooling":
        # not re-exported at top level in 1.7.0
        out = tinybrain.downsample.downsample_with_min_pooling(img, factor, num_mips=num_mips)
    elif op == "striding":
        out = tinybrain.downsample_with_striding(img, factor, num_mips=num_mips)
    else:
        raise ValueError(op)
    return [np.asarray(a) for a in out]
