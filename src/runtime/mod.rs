//! Running a compiled model: data sources, the epoch loop, metrics, checkpoints.

pub mod callbacks;
pub mod checkpoint;
pub mod class_weight;
pub mod data;
pub mod distributed;
pub mod error;
pub mod interrupt;
pub mod memory;
pub mod metrics;
pub mod nan_trace;
pub mod plot;
pub mod predict;
pub mod predict_io;
pub mod report;
pub mod resume;
pub mod train;
pub mod trained;
