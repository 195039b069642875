// pyramid.cpp: tinybrain's C ABI from C++17, with C-order std::vector buffers.
//
// The header is plain C (its declarations sit in extern "C"), so C++ needs nothing
// else. The volume is stored in C order (the last axis, z, fastest), as most C++ code
// stores it; the library is told so with explicit strides, for the input and for the
// outputs, and nothing is copied or transposed. Every output voxel is checked against
// a naive loop written from SEMANTICS.md (16-bit 2x2 averaging: replicate-pad each
// level's accumulator to even size, sum 2x2 blocks in a wide integer, and mip m is
// acc >> 2*(m+1), no accumulator reset before mip 4).
//
// Build (from the repository root, after `cargo build --release`):
//   g++ -std=c++17 -Wall -Wextra -Wpedantic -Iinclude examples-c/pyramid.cpp
//       -Ltarget/release -ltinybrain -Wl,-rpath,"$PWD/target/release" -o pyramid_cpp
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "tinybrain.h"

namespace {

constexpr std::size_t kNdim = 3;
constexpr std::size_t kMips = 3;
using Shape = std::array<std::size_t, kNdim>;
using Strides = std::array<std::ptrdiff_t, kNdim>;

// Element strides of a C-ordered array: z fastest, then y, then x.
Strides c_order_strides(const Shape &s) {
    return {static_cast<std::ptrdiff_t>(s[1] * s[2]), static_cast<std::ptrdiff_t>(s[2]), 1};
}

std::size_t c_index(const Shape &s, std::size_t x, std::size_t y, std::size_t z) {
    return (x * s[1] + y) * s[2] + z;
}

std::size_t clamp_index(std::size_t i, std::size_t n) { return i < n ? i : n - 1; }

bool ok(std::int32_t status, const char *what) {
    if (status == TB_OK) return true;
    std::fprintf(stderr, "FAIL %s: %s: %s\n", what, tb_status_name(status), tb_last_error_message());
    return false;
}

}  // namespace

int main() {
    const Shape shape = {13, 11, 3};  // x, y, z
    const Shape factor = {2, 2, 1};

    // Deterministic 16-bit data using the whole range (so sums need the wide accumulator).
    std::vector<std::uint16_t> image(shape[0] * shape[1] * shape[2]);
    std::uint32_t state = 12345u;
    for (auto &v : image) {
        state = state * 1664525u + 1013904223u;  // LCG
        v = static_cast<std::uint16_t>(state >> 16);
    }
    const Strides strides = c_order_strides(shape);

    // Shapes from the library, C-order buffers and strides for every mip.
    std::vector<Shape> shapes(kMips + 1);
    shapes[0] = shape;
    std::vector<std::vector<std::uint16_t>> mips(kMips);
    std::vector<Strides> mip_strides(kMips);
    std::vector<void *> outputs(kMips);
    std::vector<const std::ptrdiff_t *> output_strides(kMips);
    for (std::size_t k = 1; k <= kMips; ++k) {
        std::size_t len = 0;
        if (!ok(tb_mip_shape(kNdim, shape.data(), factor.data(), k, shapes[k].data()), "tb_mip_shape") ||
            !ok(tb_mip_len(kNdim, shape.data(), factor.data(), k, &len), "tb_mip_len"))
            return 1;
        mips[k - 1].assign(len, 0);
        mip_strides[k - 1] = c_order_strides(shapes[k]);
        outputs[k - 1] = mips[k - 1].data();
        output_strides[k - 1] = mip_strides[k - 1].data();
    }

    if (!ok(tb_downsample_with_averaging(image.data(), TB_UINT16, kNdim, shape.data(), strides.data(),
                                         factor.data(), kMips, 0, outputs.data(), output_strides.data()),
            "tb_downsample_with_averaging"))
        return 1;

    // Naive reference, in C order too.
    std::vector<std::uint64_t> acc(image.begin(), image.end());
    Shape s = shape;
    std::size_t checked = 0, bad = 0;
    for (std::size_t m = 0; m < kMips; ++m) {
        const Shape n = {(s[0] + 1) / 2, (s[1] + 1) / 2, s[2]};
        if (n != shapes[m + 1]) {
            std::fprintf(stderr, "FAIL tb_mip_shape for mip %zu\n", m + 1);
            return 1;
        }
        std::vector<std::uint64_t> next(n[0] * n[1] * n[2]);
        for (std::size_t x = 0; x < n[0]; ++x)
            for (std::size_t y = 0; y < n[1]; ++y)
                for (std::size_t z = 0; z < n[2]; ++z) {
                    const std::size_t x0 = clamp_index(2 * x, s[0]), x1 = clamp_index(2 * x + 1, s[0]);
                    const std::size_t y0 = clamp_index(2 * y, s[1]), y1 = clamp_index(2 * y + 1, s[1]);
                    const std::uint64_t sum = acc[c_index(s, x0, y0, z)] + acc[c_index(s, x1, y0, z)] +
                                              acc[c_index(s, x0, y1, z)] + acc[c_index(s, x1, y1, z)];
                    next[c_index(n, x, y, z)] = sum;
                    const auto want = static_cast<std::uint16_t>(sum >> (2 * (m + 1)));
                    const std::uint16_t got = mips[m][c_index(n, x, y, z)];
                    ++checked;
                    if (got != want && bad++ < 5)
                        std::fprintf(stderr, "FAIL mip %zu at (%zu,%zu,%zu): got %u, want %u\n", m + 1, x, y,
                                     z, static_cast<unsigned>(got), static_cast<unsigned>(want));
                }
        acc.swap(next);
        s = n;
    }

    std::printf("tinybrain %s from C++: uint16 %zux%zux%zu in C order, %zu mips, %zu voxels checked: %s\n",
                tb_version(), shape[0], shape[1], shape[2], kMips, checked, bad ? "MISMATCH" : "ok");
    return bad ? 1 : 0;
}
