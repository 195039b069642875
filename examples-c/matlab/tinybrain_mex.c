/*
 * tinybrain_mex.c: MATLAB / GNU Octave MEX gateway to the tinybrain C library.
 *
 *   mips = tinybrain_mex(method, img, factor)
 *   mips = tinybrain_mex(method, img, factor, num_mips)
 *   mips = tinybrain_mex(method, img, factor, num_mips, sparse)
 *   v    = tinybrain_mex('version')
 *
 *   method    'averaging', 'segmentation', 'min_pooling', 'max_pooling' or 'striding'
 *   img       a real numeric array of any size: uint8..uint64, int8..int64, single or
 *             double. Passed to the library as it is (MATLAB arrays are column-major,
 *             the library's default order): nothing is copied. Axis 1 is tinybrain's x.
 *   factor    positive integers, one per dimension of img (default num_mips = 1);
 *             missing trailing entries are 1, extra trailing entries must be 1 (MATLAB
 *             drops trailing singleton dimensions: size(zeros(8,8,1)) is [8 8]).
 *   sparse    true: averaging leaves zeros out, segmentation treats 0 as background.
 *   mips      1 x num_mips cell array, mip 1 first, each of img's class and of size
 *             ceil(size(img) ./ factor.^k).
 *
 * Errors raise MATLAB errors with the identifier tinybrain:<STATUS NAME> (for example
 * tinybrain:TB_ERR_FACTOR) and the library's message, or tinybrain:usage.
 *
 * Build:
 *   Octave: mkoctfile --mex -I<prefix>/include tinybrain_mex.c -L<prefix>/lib -ltinybrain \
 *               -Wl,-rpath,<prefix>/lib
 *   MATLAB: mex -R2018a -I<prefix>/include tinybrain_mex.c -L<prefix>/lib -ltinybrain \
 *               LDFLAGS='$LDFLAGS -Wl,-rpath,<prefix>/lib'
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mex.h"
#include "tinybrain.h"

typedef int32_t (*downsample_fn)(const void *, int32_t, size_t, const size_t *, const ptrdiff_t *,
                                 const size_t *, size_t, uint32_t, void *const *,
                                 const ptrdiff_t *const *);

static const struct {
    const char *name;
    downsample_fn fn;
} METHODS[] = {
    {"averaging", tb_downsample_with_averaging},
    {"segmentation", tb_downsample_segmentation},
    {"min_pooling", tb_downsample_with_min_pooling},
    {"max_pooling", tb_downsample_with_max_pooling},
    {"striding", tb_downsample_with_striding},
};

static void usage_error(const char *message)
{
    mexErrMsgIdAndTxt("tinybrain:usage", "%s", message);
}

/* Raises the library's error as tinybrain:<STATUS NAME>, after freeing `partial`. */
static void status_error(int32_t status, mxArray *partial)
{
    char id[64];
    snprintf(id, sizeof id, "tinybrain:%s", tb_status_name(status));
    mxDestroyArray(partial);
    mexErrMsgIdAndTxt(id, "%s", tb_last_error_message());
}

/* The tb_dtype of a MATLAB class, or 0. */
static int32_t dtype_of(mxClassID id)
{
    switch (id) {
    case mxUINT8_CLASS: return TB_UINT8;
    case mxUINT16_CLASS: return TB_UINT16;
    case mxUINT32_CLASS: return TB_UINT32;
    case mxUINT64_CLASS: return TB_UINT64;
    case mxINT8_CLASS: return TB_INT8;
    case mxINT16_CLASS: return TB_INT16;
    case mxINT32_CLASS: return TB_INT32;
    case mxINT64_CLASS: return TB_INT64;
    case mxSINGLE_CLASS: return TB_FLOAT32;
    case mxDOUBLE_CLASS: return TB_FLOAT64;
    default: return 0;
    }
}

/* A double that must hold a non-negative whole number, as size_t. */
static size_t whole_number(double v, const char *what)
{
    if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(size_t)v)
        usage_error(what);
    return (size_t)v;
}

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[])
{
    char method[32];
    downsample_fn fn = NULL;
    const mxArray *img;
    const mwSize *dims;
    size_t ndim, a, k, num_mips = 1, nfactor;
    size_t shape[TB_MAX_NDIM], factor[TB_MAX_NDIM];
    void *outputs[64];
    uint32_t flags = 0;
    int32_t dtype, status;
    const double *f;
    mxArray *cell;

    (void)nlhs;
    if (nrhs < 1 || !mxIsChar(prhs[0]) || mxGetString(prhs[0], method, sizeof method) != 0)
        usage_error("the first argument must be a method name or 'version'");
    if (strcmp(method, "version") == 0) {
        plhs[0] = mxCreateString(tb_version());
        return;
    }
    for (k = 0; k < sizeof METHODS / sizeof METHODS[0]; k++)
        if (strcmp(method, METHODS[k].name) == 0)
            fn = METHODS[k].fn;
    if (fn == NULL)
        usage_error("unknown method; use averaging, segmentation, min_pooling, max_pooling or striding");
    if (nrhs < 3 || nrhs > 5)
        usage_error("call tinybrain_mex(method, img, factor [, num_mips [, sparse]])");

    img = prhs[1];
    dtype = dtype_of(mxGetClassID(img));
    if (dtype == 0 || mxIsComplex(img) || mxIsSparse(img))
        mexErrMsgIdAndTxt("tinybrain:class", "img must be a real, full array of class "
                                             "uint8..uint64, int8..int64, single or double, not %s",
                          mxGetClassName(img));
    ndim = (size_t)mxGetNumberOfDimensions(img);
    if (ndim > TB_MAX_NDIM)
        usage_error("img has more than 8 dimensions");
    dims = mxGetDimensions(img);
    for (a = 0; a < ndim; a++)
        shape[a] = (size_t)dims[a];

    if (!mxIsDouble(prhs[2]) || mxIsComplex(prhs[2]))
        usage_error("factor must be a real double vector");
    nfactor = mxGetNumberOfElements(prhs[2]);
    f = mxGetPr(prhs[2]);
    for (a = 0; a < ndim; a++)
        factor[a] = a < nfactor ? whole_number(f[a], "factor entries must be whole numbers") : 1;
    for (a = ndim; a < nfactor; a++)
        if (f[a] != 1)
            usage_error("factor has more entries than img has dimensions, and they are not 1");

    if (nrhs >= 4) {
        if (!mxIsNumeric(prhs[3]) || mxGetNumberOfElements(prhs[3]) != 1)
            usage_error("num_mips must be a scalar");
        num_mips = whole_number(mxGetScalar(prhs[3]), "num_mips must be a whole number");
        if (num_mips > sizeof outputs / sizeof outputs[0])
            usage_error("num_mips is at most 64");
    }
    if (nrhs >= 5) {
        if ((!mxIsLogical(prhs[4]) && !mxIsNumeric(prhs[4])) || mxGetNumberOfElements(prhs[4]) != 1)
            usage_error("sparse must be true or false");
        flags = mxGetScalar(prhs[4]) != 0 ? TB_SPARSE : 0;
    }

    /* One output array per mip, of the shape the library computes. */
    cell = mxCreateCellMatrix(1, (mwSize)num_mips);
    for (k = 1; k <= num_mips; k++) {
        size_t mip[TB_MAX_NDIM];
        mwSize mdims[TB_MAX_NDIM];
        mxArray *out;
        status = tb_mip_shape(ndim, shape, factor, k, mip);
        if (status != TB_OK)
            status_error(status, cell);
        for (a = 0; a < ndim; a++)
            mdims[a] = (mwSize)mip[a];
        out = mxCreateNumericArray((mwSize)ndim, mdims, mxGetClassID(img), mxREAL);
        mxSetCell(cell, (mwIndex)(k - 1), out);
        outputs[k - 1] = mxGetData(out);
    }

    status = fn(mxGetData(img), dtype, ndim, shape, NULL, factor, num_mips, flags, outputs, NULL);
    if (status != TB_OK)
        status_error(status, cell);
    plhs[0] = cell;
}
