//! tinybrain: image pyramids (mip levels) for connectomics and microscopy.
//!
//! Average pooling for grayscale images, mode pooling for segmentation labels, min and
//! max pooling and striding, over 1 to 8 axes of any layout, for every integer and float
//! dtype, following the Python package tinybrain 1.7.0 except where it is wrong
//! (see SEMANTICS.md). Rust users call the functions of [`api`] on ndarray views; C and
//! other languages call the `tb_*` functions of `include/tinybrain.h` ([`capi`]).

// Loops over axis indices that address several per-axis arrays at once read better
// as index loops.
#![allow(clippy::needless_range_loop)]

pub mod api;
pub mod capi;
mod cascade;
mod dtype;
mod engine;
mod error;
mod kernels;
mod populate;
mod shape;
mod sink;
mod threads;
mod tiles;

pub use api::{
    downsample, downsample_into, downsample_segmentation, downsample_with_averaging, downsample_with_max_pooling,
    downsample_with_min_pooling, downsample_with_striding, Method,
};
pub use cascade::READ_AHEAD_ENV;
pub use dtype::{AveragingClass, DType, Element};
pub use error::{Error, ErrorKind, Result};
pub use shape::{chunk_alignment, mip_shape, pyramid_len, MAX_NDIM};
pub use threads::{num_threads, set_num_threads, NUM_THREADS_ENV};
