// tinybrain.hpp: a header-only C++17 layer over the tinybrain C ABI (tinybrain.h).
//
// Written by hand (tinybrain.h is generated); link the same library as from C.
//
//   #include <tinybrain.hpp>
//
//   std::vector<std::uint8_t> image(512 * 512 * 64);        // x fastest (Fortran order)
//   auto pyr = tinybrain::downsample_with_averaging(image.data(), {512, 512, 64}, {2, 2}, 4);
//   pyr.shape(1);      // {256, 256, 64}: the shape of mip 1 (shape(0) is the input's)
//   pyr.mip(1);        // std::vector<std::uint8_t> of mip 1, Fortran order
//   pyr.at(2, {x, y, z});
//
//   auto seg = tinybrain::downsample_segmentation(labels.data(), shape, {2, 2, 1}, 3, true);
//
// - The element type picks the dtype: uint8..uint64, int8..int64 (any standard integer
//   type of 1, 2, 4 or 8 bytes except char and bool), float, double. Anything else does not
//   compile.
// - Shapes and factors list axis 0 (x) first. A factor shorter than the shape is padded
//   with 1s; extra trailing entries must be 1.
// - Input strides (in elements, any sign) are optional: empty means Fortran order. A
//   C-order array passes tinybrain::c_order_strides(shape). Nothing is copied.
// - Outputs: std::vector per mip (downsample_*), or the caller's own memory
//   (downsample_into: one pointer per mip with optional strides; downsample_packed: all
//   mips in one buffer).
// - Every failure throws tinybrain::error (a std::runtime_error) carrying the status code
//   (tb_status), its name and the library's message. Nothing is written on failure.
#ifndef TINYBRAIN_HPP
#define TINYBRAIN_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "tinybrain.h"

namespace tinybrain {

using shape_t = std::vector<std::size_t>;
using strides_t = std::vector<std::ptrdiff_t>;

// The five methods (the C functions tb_downsample_<name>).
enum class method { averaging, segmentation, min_pooling, max_pooling, striding };

// A failed call: status() is the tb_status code, what() is "NAME: message".
class error : public std::runtime_error {
public:
    error(std::int32_t status, const std::string &message)
        : std::runtime_error(std::string(tb_status_name(status)) + ": " + message), status_(status) {}
    std::int32_t status() const noexcept { return status_; }
    const char *status_name() const noexcept { return tb_status_name(status_); }

private:
    std::int32_t status_;
};

// Throws tinybrain::error for any status but TB_OK.
inline void check(std::int32_t status) {
    if (status != TB_OK) throw error(status, tb_last_error_message());
}

namespace detail {
template <class T> struct unsupported : std::false_type {};

template <class U> constexpr bool is_standard_integer =
    std::is_same_v<U, signed char> || std::is_same_v<U, unsigned char> || std::is_same_v<U, short> ||
    std::is_same_v<U, unsigned short> || std::is_same_v<U, int> || std::is_same_v<U, unsigned> ||
    std::is_same_v<U, long> || std::is_same_v<U, unsigned long> || std::is_same_v<U, long long> ||
    std::is_same_v<U, unsigned long long>;

template <class T> constexpr std::int32_t dtype_of() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, float>) {
        return TB_FLOAT32;
    } else if constexpr (std::is_same_v<U, double>) {
        return TB_FLOAT64;
    } else if constexpr (is_standard_integer<U> && (sizeof(U) == 1 || sizeof(U) == 2 || sizeof(U) == 4 ||
                                                    sizeof(U) == 8)) {
        // Codes are consecutive by size: 8, 16, 32, 64 bits.
        constexpr std::int32_t size_rank = sizeof(U) == 1 ? 0 : sizeof(U) == 2 ? 1 : sizeof(U) == 4 ? 2 : 3;
        return (std::is_signed_v<U> ? std::int32_t{TB_INT8} : std::int32_t{TB_UINT8}) + size_rank;
    } else {
        static_assert(unsupported<T>::value, "tinybrain: unsupported element type");
        return 0;
    }
}

using multi_fn = std::int32_t (*)(const void *, std::int32_t, std::size_t, const std::size_t *,
                                  const std::ptrdiff_t *, const std::size_t *, std::size_t, std::uint32_t,
                                  void *const *, const std::ptrdiff_t *const *);
using packed_fn = std::int32_t (*)(const void *, std::int32_t, std::size_t, const std::size_t *,
                                   const std::ptrdiff_t *, const std::size_t *, std::size_t, std::uint32_t,
                                   void *);

inline multi_fn multi(method m) {
    switch (m) {
    case method::averaging: return tb_downsample_with_averaging;
    case method::segmentation: return tb_downsample_segmentation;
    case method::min_pooling: return tb_downsample_with_min_pooling;
    case method::max_pooling: return tb_downsample_with_max_pooling;
    case method::striding: return tb_downsample_with_striding;
    }
    throw error(TB_ERR_UNSUPPORTED, "unknown tinybrain::method");
}

inline packed_fn packed(method m) {
    switch (m) {
    case method::averaging: return tb_downsample_with_averaging_packed;
    case method::segmentation: return tb_downsample_segmentation_packed;
    case method::min_pooling: return tb_downsample_with_min_pooling_packed;
    case method::max_pooling: return tb_downsample_with_max_pooling_packed;
    case method::striding: return tb_downsample_with_striding_packed;
    }
    throw error(TB_ERR_UNSUPPORTED, "unknown tinybrain::method");
}

inline const std::ptrdiff_t *strides_or_null(const shape_t &shape, const strides_t &strides) {
    if (strides.empty()) return nullptr;
    if (strides.size() != shape.size())
        throw error(TB_ERR_STRIDES, "got " + std::to_string(strides.size()) + " strides for " +
                                        std::to_string(shape.size()) + " axes");
    return strides.data();
}

inline std::uint32_t flags(bool sparse) { return sparse ? TB_SPARSE : 0u; }
}  // namespace detail

// The tb_dtype code of an element type, at compile time.
template <class T> inline constexpr std::int32_t dtype_v = detail::dtype_of<T>();

// The factor as ndim entries: missing trailing entries are 1, extra ones must be 1.
inline shape_t pad_factor(const shape_t &factor, std::size_t ndim) {
    shape_t out(ndim, 1);
    for (std::size_t a = 0; a < factor.size(); ++a) {
        if (a < ndim) {
            out[a] = factor[a];
        } else if (factor[a] != 1) {
            throw error(TB_ERR_FACTOR, "the factor has " + std::to_string(factor.size()) +
                                           " entries for " + std::to_string(ndim) + " axes, and entry " +
                                           std::to_string(a) + " is not 1");
        }
    }
    return out;
}

// Element strides of a C-ordered array (last axis fastest) of this shape.
inline strides_t c_order_strides(const shape_t &shape) {
    strides_t s(shape.size());
    std::ptrdiff_t step = 1;
    for (std::size_t a = shape.size(); a-- > 0;) {
        s[a] = step;
        step *= static_cast<std::ptrdiff_t>(shape[a]);
    }
    return s;
}

// The shape of mip `mip` (0 = the input): ceil(shape / factor^mip) per axis.
inline shape_t mip_shape(const shape_t &shape, const shape_t &factor, std::size_t mip) {
    const shape_t f = pad_factor(factor, shape.size());
    shape_t out(shape.size());
    check(tb_mip_shape(shape.size(), shape.data(), f.data(), mip, out.data()));
    return out;
}

// Elements of mip `mip`, and of mips 1..num_mips together (a packed buffer).
inline std::size_t mip_len(const shape_t &shape, const shape_t &factor, std::size_t mip) {
    const shape_t f = pad_factor(factor, shape.size());
    std::size_t n = 0;
    check(tb_mip_len(shape.size(), shape.data(), f.data(), mip, &n));
    return n;
}

inline std::size_t pyramid_len(const shape_t &shape, const shape_t &factor, std::size_t num_mips) {
    const shape_t f = pad_factor(factor, shape.size());
    std::size_t n = 0;
    check(tb_pyramid_len(shape.size(), shape.data(), f.data(), num_mips, &n));
    return n;
}

inline std::string version() { return tb_version(); }
inline void set_num_threads(std::size_t n) { check(tb_set_num_threads(n)); }
inline std::size_t get_num_threads() { return tb_get_num_threads(); }

// The mips of one call, each a Fortran-ordered vector with its shape.
template <class T> struct pyramid {
    std::vector<shape_t> shapes;       // shapes[0] is the input's, shapes[k] mip k's
    std::vector<std::vector<T>> mips;  // mips[k - 1] is mip k

    std::size_t num_mips() const noexcept { return mips.size(); }
    const shape_t &shape(std::size_t k) const { return shapes.at(k); }
    const std::vector<T> &mip(std::size_t k) const {
        if (k == 0 || k > mips.size()) throw std::out_of_range("tinybrain::pyramid::mip: no mip " + std::to_string(k));
        return mips[k - 1];
    }
    // Element `index` (axis 0 first) of mip k >= 1.
    const T &at(std::size_t k, const shape_t &index) const {
        const shape_t &s = shape(k);
        if (index.size() != s.size()) throw std::out_of_range("tinybrain::pyramid::at: wrong number of indices");
        std::size_t offset = 0;
        for (std::size_t a = s.size(); a-- > 0;) {
            if (index[a] >= s[a]) throw std::out_of_range("tinybrain::pyramid::at: index out of range");
            offset = offset * s[a] + index[a];
        }
        return mip(k)[offset];
    }
};

// Writes mips 1..outputs.size() into the caller's buffers: outputs[k-1] points to element
// (0, ...) of mip k, laid out as output_strides[k-1] says (empty list or entry: Fortran).
template <class T>
void downsample_into(method m, const T *data, const shape_t &shape, const shape_t &factor,
                     const std::vector<T *> &outputs, bool sparse = false, const strides_t &strides = {},
                     const std::vector<strides_t> &output_strides = {}) {
    const shape_t f = pad_factor(factor, shape.size());
    const std::ptrdiff_t *in_strides = detail::strides_or_null(shape, strides);
    std::vector<void *> outs(outputs.begin(), outputs.end());
    std::vector<const std::ptrdiff_t *> out_strides;
    if (!output_strides.empty()) {
        if (output_strides.size() != outputs.size())
            throw error(TB_ERR_STRIDES, "output_strides needs one entry per output");
        for (const strides_t &s : output_strides) out_strides.push_back(detail::strides_or_null(shape, s));
    }
    check(detail::multi(m)(data, dtype_v<T>, shape.size(), shape.data(), in_strides, f.data(), outputs.size(),
                           detail::flags(sparse), outs.data(), out_strides.empty() ? nullptr : out_strides.data()));
}

// Writes mips 1..num_mips one after another, each Fortran-ordered, into out[0, out_len).
template <class T>
void downsample_packed(method m, const T *data, const shape_t &shape, const shape_t &factor, std::size_t num_mips,
                       T *out, std::size_t out_len, bool sparse = false, const strides_t &strides = {}) {
    const shape_t f = pad_factor(factor, shape.size());
    const std::ptrdiff_t *in_strides = detail::strides_or_null(shape, strides);
    const std::size_t need = pyramid_len(shape, f, num_mips);
    if (out_len < need)
        throw error(TB_ERR_OUTPUT, "the packed buffer holds " + std::to_string(out_len) + " elements, " +
                                       std::to_string(need) + " are needed");
    check(detail::packed(m)(data, dtype_v<T>, shape.size(), shape.data(), in_strides, f.data(), num_mips,
                            detail::flags(sparse), out));
}

// Mips 1..num_mips as a pyramid of vectors.
template <class T>
pyramid<T> downsample(method m, const T *data, const shape_t &shape, const shape_t &factor, std::size_t num_mips = 1,
                      bool sparse = false, const strides_t &strides = {}) {
    pyramid<T> p;
    p.shapes.push_back(shape);
    std::vector<T *> outputs;
    for (std::size_t k = 1; k <= num_mips; ++k) {
        p.shapes.push_back(mip_shape(shape, factor, k));
        p.mips.emplace_back(mip_len(shape, factor, k));
    }
    for (std::vector<T> &v : p.mips) outputs.push_back(v.data());
    downsample_into(m, data, shape, factor, outputs, sparse, strides);
    return p;
}

// tinybrain's five calls. Sparse: averaging leaves zeros out, segmentation treats 0 as
// background (note: num_mips comes before sparse here, unlike tinybrain's Python).
template <class T>
pyramid<T> downsample_with_averaging(const T *data, const shape_t &shape, const shape_t &factor,
                                     std::size_t num_mips = 1, bool sparse = false, const strides_t &strides = {}) {
    return downsample(method::averaging, data, shape, factor, num_mips, sparse, strides);
}

template <class T>
pyramid<T> downsample_segmentation(const T *data, const shape_t &shape, const shape_t &factor,
                                   std::size_t num_mips = 1, bool sparse = false, const strides_t &strides = {}) {
    return downsample(method::segmentation, data, shape, factor, num_mips, sparse, strides);
}

template <class T>
pyramid<T> downsample_with_min_pooling(const T *data, const shape_t &shape, const shape_t &factor,
                                       std::size_t num_mips = 1, const strides_t &strides = {}) {
    return downsample(method::min_pooling, data, shape, factor, num_mips, false, strides);
}

template <class T>
pyramid<T> downsample_with_max_pooling(const T *data, const shape_t &shape, const shape_t &factor,
                                       std::size_t num_mips = 1, const strides_t &strides = {}) {
    return downsample(method::max_pooling, data, shape, factor, num_mips, false, strides);
}

template <class T>
pyramid<T> downsample_with_striding(const T *data, const shape_t &shape, const shape_t &factor,
                                    std::size_t num_mips = 1, const strides_t &strides = {}) {
    return downsample(method::striding, data, shape, factor, num_mips, false, strides);
}

}  // namespace tinybrain

#endif  // TINYBRAIN_HPP
