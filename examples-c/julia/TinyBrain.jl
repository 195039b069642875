"""
    TinyBrain

Image pyramids with the tinybrain C library, from Julia over `@ccall`.

    include("TinyBrain.jl"); using .TinyBrain
    img = rand(UInt8, 512, 512, 64)
    mips = downsample_with_averaging(img, (2, 2, 1); num_mips = 4)   # Vector of Arrays, mip 1 first
    labels = downsample_segmentation(seg, (2, 2, 1); num_mips = 2, sparse = true)

Julia arrays are column-major, the library's default order, and axis 1 is tinybrain's x.
Any strided array is passed as it is, with its own strides: views, `PermutedDimsArray`,
reversed ranges; nothing is copied. Each mip is a new `Array` of the input's element type
(UInt8..UInt64, Int8..Int64, Float32, Float64) with size `cld.(size(img), factor .^ k)`.
A factor shorter than `ndims(img)` is padded with 1s. Failures throw `TinyBrainError`
with the library's status code, its name and message.

The library is `ENV["TINYBRAIN_LIB"]` (a path) if set when this file is loaded, else
`libtinybrain` from the loader's search path (e.g. an installed prefix's lib/ on
`LD_LIBRARY_PATH`). Every `@ccall` below is mirrored, argument type for argument type,
by tests/packaging/test_julia_mirror.py, which also checks them against tinybrain.h.
"""
module TinyBrain

export downsample_with_averaging, downsample_segmentation, downsample_with_min_pooling,
       downsample_with_max_pooling, downsample_with_striding, mip_shape, TinyBrainError

const libtinybrain = get(ENV, "TINYBRAIN_LIB", "libtinybrain")

const TB_SPARSE = UInt32(1)

# tb_dtype codes
const DTYPES = Dict{DataType,Int32}(
    UInt8 => 1, UInt16 => 2, UInt32 => 3, UInt64 => 4,
    Int8 => 5, Int16 => 6, Int32 => 7, Int64 => 8,
    Float32 => 9, Float64 => 10)

struct TinyBrainError <: Exception
    status::Int32
    name::String
    message::String
end

Base.showerror(io::IO, e::TinyBrainError) =
    print(io, "TinyBrainError: ", e.name, " (", e.status, "): ", e.message)

function check(status::Int32)
    status == 0 && return nothing
    message = unsafe_string(@ccall libtinybrain.tb_last_error_message()::Cstring)
    name = unsafe_string(@ccall libtinybrain.tb_status_name(status::Int32)::Cstring)
    throw(TinyBrainError(status, name, message))
end

"The library's version, \"MAJOR.MINOR.PATCH\"."
version() = unsafe_string(@ccall libtinybrain.tb_version()::Cstring)

"The factor as `n` sizes: missing trailing entries are 1, extra ones must be 1."
function padfactor(factor, n::Integer)
    f = Csize_t[factor...]
    length(f) > n && any(!=(1), f[n+1:end]) &&
        throw(ArgumentError("factor $(Tuple(factor)) has more entries than the array's $n axes"))
    return vcat(f[1:min(n, end)], ones(Csize_t, n - min(n, length(f))))
end

"The size of mip `mip` (0 = the input): `cld(shape[i], factor[i]^mip)` per axis."
function mip_shape(shape, factor, mip::Integer)
    n = length(shape)
    out = Vector{Csize_t}(undef, n)
    check(@ccall libtinybrain.tb_mip_shape(n::Csize_t, Csize_t[shape...]::Ptr{Csize_t},
                                           padfactor(factor, n)::Ptr{Csize_t}, mip::Csize_t,
                                           out::Ptr{Csize_t})::Int32)
    return Tuple(Int.(out))
end

# One method per C entry point: _downsample(Val(:averaging), ...) calls
# tb_downsample_with_averaging, and so on.
for (op, cname) in ((:averaging, :tb_downsample_with_averaging),
                    (:segmentation, :tb_downsample_segmentation),
                    (:min_pooling, :tb_downsample_with_min_pooling),
                    (:max_pooling, :tb_downsample_with_max_pooling),
                    (:striding, :tb_downsample_with_striding))
    @eval _downsample(::Val{$(QuoteNode(op))}, input, dtype, ndim, shape, strides, factor,
                      num_mips, flags, outputs) =
        @ccall libtinybrain.$cname(input::Ptr{Cvoid}, dtype::Int32, ndim::Csize_t,
                                   shape::Ptr{Csize_t}, strides::Ptr{Cptrdiff_t},
                                   factor::Ptr{Csize_t}, num_mips::Csize_t, flags::UInt32,
                                   outputs::Ptr{Ptr{Cvoid}},
                                   C_NULL::Ptr{Ptr{Cptrdiff_t}})::Int32
end

function downsample(op::Symbol, img::StridedArray{T,N}, factor, num_mips::Integer,
                    sparse::Bool) where {T,N}
    dtype = get(DTYPES, T) do
        throw(ArgumentError("tinybrain does not support element type $T"))
    end
    f = padfactor(factor, N)
    mips = [Array{T,N}(undef, mip_shape(size(img), f, k)) for k in 1:num_mips]
    outputs = Ptr{Cvoid}[pointer(m) for m in mips]
    GC.@preserve img mips begin
        check(_downsample(Val(op), Ptr{Cvoid}(pointer(img)), dtype, N, Csize_t[size(img)...],
                          Cptrdiff_t[strides(img)...], f, num_mips,
                          sparse ? TB_SPARSE : UInt32(0), outputs))
    end
    return mips
end

"Average pooling; `sparse = true` leaves zeros out of the mean."
downsample_with_averaging(img, factor; num_mips = 1, sparse = false) =
    downsample(:averaging, img, factor, num_mips, sparse)

"Mode pooling of labels; `sparse = true` makes 0 background."
downsample_segmentation(img, factor; num_mips = 1, sparse = false) =
    downsample(:segmentation, img, factor, num_mips, sparse)

"Minimum over each window (NaN propagates)."
downsample_with_min_pooling(img, factor; num_mips = 1) =
    downsample(:min_pooling, img, factor, num_mips, false)

"Maximum over each window (NaN propagates)."
downsample_with_max_pooling(img, factor; num_mips = 1) =
    downsample(:max_pooling, img, factor, num_mips, false)

"The first voxel of each window."
downsample_with_striding(img, factor; num_mips = 1) =
    downsample(:striding, img, factor, num_mips, false)

end # module
