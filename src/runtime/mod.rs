//! Running a compiled model: data sources, the epoch loop, metrics, checkpoints.

pub mod data;
