//! Element types and the one place where a runtime dtype code becomes a Rust type.

use std::fmt::Debug;
use std::hash::Hash;

use ndarray::{ArrayViewD, ArrayViewMutD};

use crate::api::Method;
use crate::error::Result;

/// The ten element types, with the codes of the C ABI (`tb_dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8 = 1,
    U16 = 2,
    U32 = 3,
    U64 = 4,
    I8 = 5,
    I16 = 6,
    I32 = 7,
    I64 = 8,
    F32 = 9,
    F64 = 10,
}

impl DType {
    pub const ALL: [DType; 10] = [
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::F32,
        DType::F64,
    ];

    pub fn from_code(code: i32) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| *d as i32 == code)
    }

    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
}

/// How averaging accumulates a dtype (SEMANTICS.md, "Average pooling").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AveragingClass {
    /// 8- and 16-bit integers: tinybrain's shifted accumulator with periodic resets.
    NarrowInt,
    /// 32- and 64-bit integers: exact accumulation in 128 bits.
    WideInt,
    /// Floats: accumulation in float64.
    Float,
}

/// A pixel type the library can downsample.
///
/// Implemented for the ten dtypes of [`DType`] and sealed: the kernels are written once,
/// generically, and instantiated per type by [`dispatch_dtype!`](crate::dispatch_dtype).
pub trait Element: Copy + Send + Sync + PartialEq + PartialOrd + Debug + Default + 'static + private::Sealed {
    const DTYPE: DType;
    const BITS: u32;
    const AVERAGING: AveragingClass;
    /// The smallest and largest values (infinities for floats): the identities of max
    /// and min pooling.
    const LOWEST: Self;
    const HIGHEST: Self;
    /// The bit pattern, used where labels compare bitwise (mode pooling).
    type Bits: Copy + Eq + Ord + Hash + Default + Send + Sync + Debug;

    fn to_bits(self) -> Self::Bits;
    /// Numerically zero (so -0.0 counts as zero): what sparse averaging leaves out.
    fn is_zero(self) -> bool;
    fn is_nan(self) -> bool;
    fn to_f64(self) -> f64;
    /// Integers: truncation toward zero, saturating; floats: round to nearest.
    fn from_f64(v: f64) -> Self;
    /// Exact for integers; floats are never accumulated this way.
    fn to_i128(self) -> i128;
    /// The caller guarantees `v` is in range (it is a mean of values of this type).
    fn from_i128(v: i128) -> Self;
    /// Runs a validated request on this type's kernels (`api::run_kernels`).
    #[doc(hidden)]
    fn run_kernels(
        method: Method,
        input: &ArrayViewD<'_, Self>,
        factor: &[usize],
        sparse: bool,
        outputs: &mut [ArrayViewMutD<'_, Self>],
    ) -> Result<()>;
}

/// `Element::run_kernels` of one concrete type: a plain function compiled here, where
/// every type's kernels are instantiated once. Were the generic API to call the generic
/// kernels itself, every crate calling it would compile all of them again (each test
/// crate took minutes to build that way). Never inlined, so that holds across crates.
macro_rules! run_kernels_compiled_here {
    () => {
        #[inline(never)]
        fn run_kernels(
            method: Method,
            input: &ArrayViewD<'_, Self>,
            factor: &[usize],
            sparse: bool,
            outputs: &mut [ArrayViewMutD<'_, Self>],
        ) -> Result<()> {
            crate::api::run_kernels(method, input, factor, sparse, outputs)
        }
    };
}

mod private {
    pub trait Sealed {}
}

macro_rules! impl_int_element {
    ($t:ty, $dtype:ident, $bits_ty:ty, $class:ident) => {
        impl private::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            const BITS: u32 = <$t>::BITS;
            const AVERAGING: AveragingClass = AveragingClass::$class;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            type Bits = $bits_ty;
            #[inline(always)]
            fn to_bits(self) -> $bits_ty {
                self as $bits_ty
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self == 0
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                false
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_i128(self) -> i128 {
                self as i128
            }
            #[inline(always)]
            fn from_i128(v: i128) -> Self {
                v as $t
            }
            run_kernels_compiled_here!();
        }
    };
}

impl_int_element!(u8, U8, u8, NarrowInt);
impl_int_element!(u16, U16, u16, NarrowInt);
impl_int_element!(u32, U32, u32, WideInt);
impl_int_element!(u64, U64, u64, WideInt);
impl_int_element!(i8, I8, u8, NarrowInt);
impl_int_element!(i16, I16, u16, NarrowInt);
impl_int_element!(i32, I32, u32, WideInt);
impl_int_element!(i64, I64, u64, WideInt);

macro_rules! impl_float_element {
    ($t:ty, $dtype:ident, $bits_ty:ty, $bits:expr) => {
        impl private::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            const BITS: u32 = $bits;
            const AVERAGING: AveragingClass = AveragingClass::Float;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            type Bits = $bits_ty;
            #[inline(always)]
            fn to_bits(self) -> $bits_ty {
                <$t>::to_bits(self)
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self == 0.0
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_i128(self) -> i128 {
                self as i128
            }
            #[inline(always)]
            fn from_i128(v: i128) -> Self {
                v as $t
            }
            run_kernels_compiled_here!();
        }
    };
}

impl_float_element!(f32, F32, u32, 32);
impl_float_element!(f64, F64, u64, 64);

/// Runs `$body` with `$T` bound to the Rust type of a runtime [`DType`].
///
/// This is the only place where a dtype becomes a type, so every kernel exists once
/// in the source and ten times in the binary.
#[macro_export]
macro_rules! dispatch_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DType::U64 => {
                type $T = u64;
                $body
            }
            $crate::DType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_rejected() {
        for d in DType::ALL {
            assert_eq!(DType::from_code(d as i32), Some(d));
        }
        for bad in [0, 11, -1, i32::MAX] {
            assert_eq!(DType::from_code(bad), None);
        }
    }

    #[test]
    fn float_to_int_truncates_toward_zero() {
        assert_eq!(i8::from_f64(-2.75), -2);
        assert_eq!(u8::from_f64(2.99), 2);
        assert_eq!(<f32 as Element>::from_f64(0.1), 0.1f32);
    }
}
