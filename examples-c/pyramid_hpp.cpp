// pyramid_hpp.cpp: image and segmentation pyramids with tinybrain.hpp (C++17), checked.
//
// Makes an EM-like uint8 volume and a uint32 label volume (odd sizes on purpose), then
//   - an average pyramid (3 mips, factor 2x2x1) as std::vectors,
//   - a segmentation (mode) pyramid (3 mips) as std::vectors,
// and checks every voxel against naive loops written from SEMANTICS.md; then the same
// image stored in C order (passed with strides, not copied), the packed variant and the
// caller-buffer variant must give identical mips, and a zero factor must throw
// tinybrain::error with TB_ERR_FACTOR.
//
// Build against an installed prefix (or -Iinclude -Ltarget/release in the repository):
//   g++ -std=c++17 pyramid_hpp.cpp $(pkg-config --cflags --libs tinybrain) -o pyramid_hpp
// Exit status 0 if everything matches.
#include <cstdint>
#include <cstdio>
#include <vector>

#include "tinybrain.hpp"

namespace tb = tinybrain;

static_assert(tb::dtype_v<std::uint8_t> == TB_UINT8 && tb::dtype_v<const std::int16_t> == TB_INT16 &&
              tb::dtype_v<unsigned long long> == TB_UINT64 && tb::dtype_v<double> == TB_FLOAT64);

namespace {

int failures = 0;

void expect(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL %s\n", what);
        ++failures;
    }
}

// Fortran index of (x, y, z) in shape s.
std::size_t at(const tb::shape_t &s, std::size_t x, std::size_t y, std::size_t z) { return x + s[0] * (y + s[1] * z); }
std::size_t clamp(std::size_t i, std::size_t n) { return i < n ? i : n - 1; }

// One 2x2x1 level: out(x,y,z) = reduce(a, b, c, d) over the replicate-padded block.
template <class T, class Reduce>
std::vector<T> level(const std::vector<T> &in, const tb::shape_t &s, tb::shape_t &out_s, Reduce reduce) {
    out_s = {(s[0] + 1) / 2, (s[1] + 1) / 2, s[2]};
    std::vector<T> out(out_s[0] * out_s[1] * out_s[2]);
    for (std::size_t z = 0; z < out_s[2]; ++z)
        for (std::size_t y = 0; y < out_s[1]; ++y)
            for (std::size_t x = 0; x < out_s[0]; ++x) {
                const std::size_t x0 = clamp(2 * x, s[0]), x1 = clamp(2 * x + 1, s[0]);
                const std::size_t y0 = clamp(2 * y, s[1]), y1 = clamp(2 * y + 1, s[1]);
                out[at(out_s, x, y, z)] =
                    reduce(in[at(s, x0, y0, z)], in[at(s, x1, y0, z)], in[at(s, x0, y1, z)], in[at(s, x1, y1, z)]);
            }
    return out;
}

void print_shapes(const char *what, const std::vector<tb::shape_t> &shapes) {
    std::printf("%s:", what);
    for (const auto &s : shapes) std::printf(" %zux%zux%zu", s[0], s[1], s[2]);
    std::printf("\n");
}

}  // namespace

int main() {
    const tb::shape_t shape = {45, 38, 6};  // x, y, z
    const tb::shape_t factor = {2, 2};      // padded to {2, 2, 1}
    const std::size_t n = shape[0] * shape[1] * shape[2], mips = 3;

    // EM-like: smooth ramp, dark membranes on a diagonal grid, noise. Labels: blocky cells
    // with speckles, so every branch of the 2x2 mode rule is taken.
    std::vector<std::uint8_t> image(n);
    std::vector<std::uint32_t> labels(n);
    std::uint32_t state = 2463534242u;
    auto rnd = [&state] { return state ^= state << 13, state ^= state >> 17, state ^= state << 5; };
    for (std::size_t z = 0; z < shape[2]; ++z)
        for (std::size_t y = 0; y < shape[1]; ++y)
            for (std::size_t x = 0; x < shape[0]; ++x) {
                const std::uint32_t r = rnd();
                const unsigned v = (x + 2 * y + z) % 9 == 0 ? r % 40 : 100 + 2 * x + y + r % 50;
                image[at(shape, x, y, z)] = static_cast<std::uint8_t>(v > 255 ? 255 : v);
                labels[at(shape, x, y, z)] = r % 4 == 0 ? r % 3 : 1000 + x / 7 + 10 * (y / 5) + 100 * (z / 2);
            }

    std::printf("tinybrain %s via tinybrain.hpp, %zu threads, volume %zux%zux%zu\n", tb::version().c_str(),
                tb::get_num_threads(), shape[0], shape[1], shape[2]);
    const auto img_pyr = tb::downsample_with_averaging(image.data(), shape, factor, mips);
    const auto seg_pyr = tb::downsample_segmentation(labels.data(), shape, factor, mips);
    print_shapes("image pyramid (averaging)", img_pyr.shapes);
    print_shapes("label pyramid (mode)", seg_pyr.shapes);

    // Averaging reference: sums of replicate-padded 2x2 blocks in a wide accumulator;
    // mip k is acc_k >> 2k (no accumulator reset before mip 4).
    std::vector<std::uint64_t> acc(image.begin(), image.end());
    std::vector<std::uint32_t> modes = labels;
    tb::shape_t s = shape, next_s;
    std::size_t checked = 0;
    for (std::size_t k = 1; k <= mips; ++k) {
        auto next_modes = level(modes, s, next_s, [](std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
            return (a == b || a == c) ? a : (b == c) ? b : d;
        });
        acc = level(acc, s, next_s, [](std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) {
            return a + b + c + d;
        });
        s = next_s;
        modes.swap(next_modes);
        expect(img_pyr.shape(k) == s && seg_pyr.shape(k) == s, "mip shapes");
        std::vector<std::uint8_t> want(acc.size());
        for (std::size_t i = 0; i < acc.size(); ++i) want[i] = static_cast<std::uint8_t>(acc[i] >> (2 * k));
        expect(img_pyr.mip(k) == want, "averaging mip matches the naive loop");
        expect(seg_pyr.mip(k) == modes, "segmentation mip matches the naive loop");
        checked += 2 * want.size();
    }
    expect(img_pyr.at(1, {3, 2, 1}) == img_pyr.mip(1)[at(img_pyr.shape(1), 3, 2, 1)], "pyramid::at");

    // The same image in C order (z fastest): strides tell the library, nothing is copied.
    std::vector<std::uint8_t> c_image(n);
    const tb::strides_t c_strides = tb::c_order_strides(shape);
    for (std::size_t z = 0; z < shape[2]; ++z)
        for (std::size_t y = 0; y < shape[1]; ++y)
            for (std::size_t x = 0; x < shape[0]; ++x)
                c_image[x * c_strides[0] + y * c_strides[1] + z] = image[at(shape, x, y, z)];
    const auto c_pyr = tb::downsample_with_averaging(c_image.data(), shape, factor, mips, false, c_strides);
    expect(c_pyr.mips == img_pyr.mips, "C-order input gives the same mips");

    // All mips in one caller buffer, and into caller buffers of their own.
    std::vector<std::uint32_t> packed(tb::pyramid_len(shape, factor, mips));
    tb::downsample_packed(tb::method::segmentation, labels.data(), shape, factor, mips, packed.data(), packed.size());
    std::vector<std::uint32_t> concatenated;
    for (const auto &m : seg_pyr.mips) concatenated.insert(concatenated.end(), m.begin(), m.end());
    expect(packed == concatenated, "packed segmentation equals the per-mip vectors");

    std::vector<std::uint8_t> mip1(tb::mip_len(shape, factor, 1)), mip2(tb::mip_len(shape, factor, 2));
    tb::downsample_into(tb::method::averaging, image.data(), shape, factor, {mip1.data(), mip2.data()});
    expect(mip1 == img_pyr.mip(1) && mip2 == img_pyr.mip(2), "downsample_into equals the vectors");

    // Errors are exceptions with the status and the library's message; nothing written.
    try {
        tb::downsample_into(tb::method::averaging, image.data(), shape, {2, 0, 1}, {mip1.data()});
        expect(false, "a zero factor throws");
    } catch (const tb::error &e) {
        std::printf("error path: %s (status %d)\n", e.what(), static_cast<int>(e.status()));
        expect(e.status() == TB_ERR_FACTOR, "a zero factor throws TB_ERR_FACTOR");
        expect(mip1 == img_pyr.mip(1), "a failed call writes nothing");
    }

    std::printf("%zu voxels checked: %s\n", checked, failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
