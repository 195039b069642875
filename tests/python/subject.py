"""The library under test behind the same calling convention as models.run."""

import tinybrain_ctypes as tb


def run(op, img, factor, num_mips=1, sparse=False, out=None):
    if op == "averaging":
        return tb.downsample_with_averaging(img, factor, num_mips=num_mips, sparse=sparse, out=out)
    if op == "segmentation":
        return tb.downsample_segmentation(img, factor, sparse=sparse, num_mips=num_mips, out=out)
    if sparse:
        raise ValueError("sparse is only defined for averaging and segmentation")
    fn = {
        "min_pooling": tb.downsample_with_min_pooling,
        "max_pooling": tb.downsample_with_max_pooling,
        "striding": tb.downsample_with_striding,
    }[op]
    return fn(img, factor, num_mips=num_mips, out=out)
